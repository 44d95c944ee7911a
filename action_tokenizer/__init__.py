"""action_tokenizer"""
