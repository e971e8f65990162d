"""The node the run is on: distributed setup (Accelerate, DeepSpeed), preemption signals, host memory,
experiment trackers, the heartbeat, injected faults, the on-node preflight, provenance. Imports only the
torch-free contract."""
