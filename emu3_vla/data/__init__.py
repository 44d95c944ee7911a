"""Datasets, episode readers, the token cache and the sequence builder."""
