"""Classification heads: one small MLP per output level, on the backbone's pooled features.

`model.head` shapes every head the same way; report 000's is hidden_dims [512],
activation relu, dropout p: features -> 512 -> ReLU -> dropout -> n.
"""

from __future__ import annotations

from torch import nn

from trainers.config import HeadConfig
from trainers.model.tasks import TaskSpec

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}


def mlp_head(in_features: int, out_features: int, head: HeadConfig) -> nn.Sequential:
    """[BatchNorm ->] [Linear -> activation (-> dropout)] per hidden width, then Linear to `out_features`."""
    layers: list[nn.Module] = [nn.BatchNorm1d(in_features)] if head.batchnorm else []
    width = in_features
    for hidden in head.hidden_dims:
        layers += [nn.Linear(width, hidden), ACTIVATIONS[head.activation]()]
        if head.dropout > 0:
            layers.append(nn.Dropout(head.dropout))
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def build_heads(in_features: int, task: TaskSpec, head: HeadConfig) -> nn.ModuleDict:
    """One head per output level of `task` (logits; or super and sub), in output order."""
    return nn.ModuleDict({name: mlp_head(in_features, width, head) for name, width in task.heads})
