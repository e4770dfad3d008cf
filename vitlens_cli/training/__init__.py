"""Lens training: losses (the loop and recipes arrive with the training issue)."""
