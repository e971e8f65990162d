"""The adaptive-seeds sweep run end to end locally (tests/e2e) and on the dev cluster (tests/cluster),
and the check of its table against adaptive.json."""

from __future__ import annotations

from orchestrator.results import adaptive, collect
from orchestrator.sweep.spec import SweepSpec

E2E_SPEC = """
name: adaptive_e2e
output_dir: {out}
defaults:
  model: {{backbone: test_resnet}}
  data: {{image_size_px: 16, batch_size: 64, num_workers: 0}}
  optim: {{name: adamw, lr: 3e-3}}
  epochs: 1
  torch_threads: 1
modifiers:
  slow: {{optim.lr: 1e-6}}
  dropout: {{model.head_dropout: 0.3}}
ablations:
  Baseline: []
  + Tiny LR: [slow]
  + Dropout: [dropout]
seeds: {{initial: 3, max: 4, step: 1, stop: {{excludes_zero: true}}}}
slurm: {{cpus_per_task: 1, timeout_min: 20}}
"""


def check_adaptive_table(spec: SweepSpec) -> None:
    """Every ablation cell's seeds and stop reason in the table CSV agree with adaptive.json."""
    import pandas as pd

    root = spec.output_path
    collect.write_tables(spec, root)
    rounds = adaptive.read_state(root)
    assert rounds and rounds[-1]["finished"]
    table = pd.read_csv(root / "tables" / "table.csv")
    for label, verdict in ((v["ablation"], v) for v in rounds[-1]["verdicts"].values()):
        row = table[table["Ablation"] == label].iloc[0]
        assert int(row["digits n"]) == verdict["n"]
        assert row["digits stop"] == adaptive.stop_text(verdict)
        assert verdict["state"] in ("resolved", "futile", "max") and verdict["n"] in (3, 4)
    tiny = next(v for v in rounds[-1]["verdicts"].values() if v["ablation"] == "+ Tiny LR")
    assert tiny["delta"] < -10  # lr 1e-6 learns next to nothing in one epoch
