"""The network and what it is trained against: the timm backbone and classifier (build.py), heads,
inserted modules (inserts.py, scra.py), the label structure (tasks.py), losses and L2-SP, fine-tuning
regimes, and params/GFLOPs of the exact model (complexity.py). Imports only the torch-free contract."""
