"""trainers.runtime.distributed: the DeepSpeed config the trainer builds says what the TrainConfig
says about gradient clipping (the plugin turns an unset value into "auto", which Accelerate fills
with 1.0 at prepare())."""

from __future__ import annotations

import pytest

from trainers.config import DistributedConfig
from trainers.runtime.distributed import deepspeed_plugin


@pytest.mark.parametrize(("grad_clip_norm", "expected"), [(None, 0.0), (0.5, 0.5)])
def test_deepspeed_clipping_is_the_configs(grad_clip_norm: float | None, expected: float) -> None:
    plugin = deepspeed_plugin(DistributedConfig(strategy="deepspeed", zero_stage=1), grad_clip_norm)
    assert plugin.deepspeed_config["gradient_clipping"] == expected  # 0.0 is DeepSpeed's "off"
