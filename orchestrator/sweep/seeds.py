"""Adaptive seeds in the spec: `seeds: {initial: 3, max: 12, step: 2, stop: {halfwidth: 0.3}}`.

An alternative to a fixed `grid.seed` axis: round 1 runs `initial` seeds (0, 1, 2, ...) per cell;
after each round, every ablation cell whose delta to its baseline cell is not resolved yet, and not
futile (unlikely to resolve by `max`), gets `step` more seeds (and so does its baseline), up to
`max` (orchestrator/results/adaptive.py decides, orchestrator/results/sequential.py holds the
statistics). Seed k's run is the same run, with the same id, as seed k of a fixed grid: a fixed grid
can later take over the finished runs.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from trainers.config import StrictModel

MAX_SEEDS = 1000
"""Most seeds per cell an adaptive plan may reach."""


class StopSpec(StrictModel):
    """When a cell's delta to the baseline counts as resolved; name exactly one rule.

    Values are in the unit of the deciding table (after its `scale`: points for top-1 in %).
    """

    excludes_zero: bool = False
    """Resolved when the delta's interval excludes 0 (a real gain or loss)."""
    halfwidth: float | None = Field(None, gt=0, allow_inf_nan=False)
    """Resolved when the interval excludes 0 or its half-width is at most this many units."""
    margin: float | None = Field(None, gt=0, allow_inf_nan=False)
    """Resolved when the interval excludes 0 or lies within ±margin (the delta is smaller than that)."""

    @model_validator(mode="after")
    def _one_rule(self) -> StopSpec:
        named = [
            k
            for k, v in (("excludes_zero", self.excludes_zero), ("halfwidth", self.halfwidth), ("margin", self.margin))
            if v
        ]
        if len(named) != 1:
            got = f"got {', '.join(named)}" if named else "got none"
            raise ValueError(f"name exactly one stop rule: excludes_zero: true, halfwidth: H or margin: M ({got})")
        return self

    @property
    def kind(self) -> str:
        """excludes_zero, halfwidth or margin."""
        return "halfwidth" if self.halfwidth else "margin" if self.margin else "excludes_zero"

    @property
    def value(self) -> float:
        """The half-width or margin (0 for excludes_zero)."""
        return self.halfwidth or self.margin or 0.0


class AdaptiveSeeds(StrictModel):
    """Seeds added round by round where a delta is still unresolved (instead of `grid.seed`)."""

    initial: int = Field(3, ge=2, le=MAX_SEEDS)
    """Seeds every cell runs in round 1 (seeds 0 .. initial-1); at least 2 for an interval."""
    max: int = Field(12, ge=2, le=MAX_SEEDS)
    """Most seeds a cell may reach; an unresolved delta stops here ("stopped at max")."""
    step: int = Field(2, ge=1, le=MAX_SEEDS)
    """Seeds added per round to each unresolved cell and its baseline cell."""
    stop: StopSpec = Field(default_factory=lambda: StopSpec.model_validate({"excludes_zero": True}))
    """The stop rule: {excludes_zero: true}, {halfwidth: H} or {margin: M}."""
    futility: float = Field(0.05, ge=0, lt=1)
    """Stop a cell whose delta is unlikely to resolve by `max`: when the predicted chance that its interval
    excludes 0 at max seeds is below this (0: never; such stops never add false positives)."""
    table: str | None = None
    """Name of the table whose first metric and scale the rule reads; None: the first table."""

    @model_validator(mode="after")
    def _ordered(self) -> AdaptiveSeeds:
        if self.initial > self.max:
            raise ValueError(f"initial ({self.initial}) must not exceed max ({self.max})")
        return self

    @property
    def looks(self) -> tuple[int, ...]:
        """Seeds per cell at each round's look: initial, initial + step, ..., max."""
        return (*range(self.initial, self.max, self.step), self.max)


class SeedSpread(StrictModel):
    """A site's declared seed-to-seed spread of one backbone on one dataset (`plan --detect` falls back on it)."""

    backbone: str
    """timm name, as in the grid."""
    dataset: str
    """Dataset name or label, as the tables show it."""
    sd: float = Field(gt=0, allow_inf_nan=False)
    """Standard deviation over seeds of a cell's metric, in table units (points of top-1 in %)."""
    metric: str = "top1"
    """The metric it was measured on (as in a table's `metric`)."""
