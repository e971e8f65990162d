"""metric_values walks metrics.json once (flat keys and their rules remembered): the values, their
order and the problems are those of clean_metrics(flatten(...)), for any nested object."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trainers import contract

SECTIONS = st.sampled_from(["test", "val", "timing", "complexity", "provenance", "state", "x", "a.b"])
KEYS = st.sampled_from(["top1", "loss", "wall_s", "gflops", "num_processes", "counter", "n", "b", "b.c", "state"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**16), max_value=10**16)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=3)
)
LEAVES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=2) | st.dictionaries(KEYS, inner, max_size=3), max_leaves=10
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(SECTIONS | KEYS, LEAVES, max_size=6))
def test_the_walk_gives_what_flatten_then_clean_give(data: dict[str, Any]) -> None:
    two_steps = contract.clean_metrics(contract.flatten(data))
    walked = contract._clean_walk(data)
    if walked is None:  # a key with a `.`: the two steps decide
        assert any("." in key for key in _keys(data))
        assert contract.metric_values(data, (None,)) == two_steps
        return
    assert walked == two_steps
    assert list(walked[0]) == list(two_steps[0]), "the same column order"


def _keys(value: Any) -> list[str]:
    if not isinstance(value, dict):
        return []
    return [*value, *(key for child in value.values() for key in _keys(child))]


def test_a_real_metrics_file_is_walked_and_a_dotted_key_is_not() -> None:
    data = {"test": {"top1": 0.5, "loss": 1.2, "n_images": 10}, "timing": {"wall_s": 3.0}, "best_epoch": 1}
    walked = contract._clean_walk(data)
    assert walked == ({"test.top1": 0.5, "test.loss": 1.2, "test.n_images": 10.0, "timing.wall_s": 3.0}, [])
    assert contract._clean_walk({"test": {"top1": 0.5}, "test.top1": 2.0}) is None
    assert contract.metric_values({"test": {"top1": 0.5}, "test.top1": 2.0}, (None,))[1] == [
        "metrics.json: test.top1 = 2.0 is outside [0, 1]"
    ]


SCORE_KEYS = st.sampled_from(["top1", "top5", "loss", "macro_f1", "n_images", "b.c", "super"])
SCORE_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-5, max_value=10**16),
    st.booleans(),
    st.none(),
    st.text(max_size=2),
    st.dictionaries(SCORE_KEYS, st.floats(), max_size=2),
    st.lists(st.floats(), max_size=2),
)
SECTION_VALUES = st.one_of(st.dictionaries(SCORE_KEYS, SCORE_VALUES, max_size=5), SCORE_VALUES)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(["test", "val", "timing", "test.top1", "x"]), SECTION_VALUES, max_size=4))
def test_plain_scores_answer_as_the_full_rule_or_leave_it_to_it(data: dict[str, Any]) -> None:
    plain = contract._plain_scores(data)
    assert plain is contract._UNSURE or plain == contract._scores_problem(data)
    assert contract.result_problem(data, (None,)) == contract._scores_problem(data)


def test_a_usual_metrics_file_is_answered_without_the_full_rule() -> None:
    data = {"test": {"top1": 0.5, "loss": 1.2, "n_images": 10}, "val": {"top1": 0.4}, "timing": {"wall_s": 3.0}}
    assert contract._plain_scores(data) is None
    assert contract._plain_scores({"val": {"top1": 0.4}}) is contract._UNSURE  # no test score: the rule says so
    assert contract.result_problem({"val": {"top1": 0.4}}, (None,)) == "metrics.json has no test scores"
    assert contract._plain_scores({"test": {"top1": 1.5}}) is contract._UNSURE
