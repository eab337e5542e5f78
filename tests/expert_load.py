"""How tests compare two runs' expert loads (`training_summary.json`'s `expert_load.tokens_per_expert`)."""

import pytest


def assert_same_expert_load(ours: dict, theirs: dict) -> None:
    """Each layer's total is exact (every token picks top-k experts). The per-expert counts come from two
    runs' own float computations (a resume, sharded vs whole-sequence routing), where a router score at a
    rounding boundary may pick the neighbouring expert on another CPU: within 1% of the layer's total. A real
    bug (lost experts or expert bias, a token counted twice) moves far more, and moves the loss too."""
    mine, reference = ours["expert_load"]["tokens_per_expert"], theirs["expert_load"]["tokens_per_expert"]
    assert [sum(layer) for layer in mine] == [sum(layer) for layer in reference]
    for index, (layer, expected) in enumerate(zip(mine, reference, strict=True)):
        assert layer == pytest.approx(expected, abs=0.01 * sum(expected)), f"layer {index}"
