"""The checks room: what `plan` and `submit` check before anything is submitted, including the
checks that need torch, timm or the trainer's model code on the login node (models built on the
meta device: checks.models; FLOPs and parameters: checks.complexity; the backbone table's
generation: checks.backbone_table). Kept apart so that `orchestrator.sweep` stays torch-free in
fact (tests/architecture/test_layering.py imports it in a fresh interpreter). Imported by the CLI only.
"""
