"""Training: the VLA trainer (token cache -> weighted next-token loss) and the VQ tokenizer trainer."""
