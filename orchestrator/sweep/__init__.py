"""The sweep: spec models, overrides, YAML I/O, site files, the plan, the sweep folder, preflight checks.

Torch-free: everything here runs on a login node in well under a second.
"""
