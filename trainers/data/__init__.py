"""Images to batches: loaders and samplers (loaders.py), transforms (transforms.py), the decoded-image
cache (image_cache.py). Imports the datasets and the torch-free contract, never the model, loop or runtime."""
