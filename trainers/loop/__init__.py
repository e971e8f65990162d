"""The training loop and what only it uses. `run.run_training` (what `trainers.run` calls) builds
the run's frozen `Parts` (build.py), resumes its `Progress` (resume.py), runs each epoch (epoch.py:
`LoopState` in, a new `LoopState` out) and scores the tested model (evaluate.py). Beside it:
optimisers and schedules, metrics, best-epoch selection and early stopping, history.csv,
checkpoints, and the eval/predict modes on a finished run. The one wing that may import the others."""
