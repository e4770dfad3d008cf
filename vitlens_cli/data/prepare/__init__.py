"""Dataset preparation: downloads, safe extraction, conversion into the cache."""
