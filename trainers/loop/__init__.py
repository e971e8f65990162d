"""The training loop and what only it uses: run.py (run_training, the entry `trainers.run` calls),
optimisers and schedules, metrics, best-epoch selection and early stopping, history.csv, checkpoints,
and the eval/predict modes on a finished run. The one wing that may import the others."""
