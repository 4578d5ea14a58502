"""Video data: datasets as distributed, a synthetic dataset, decoding, protocols and loaders."""
