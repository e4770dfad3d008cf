"""Lens training: recipes, data feeding, losses, the loop, checkpoints and DDP."""
