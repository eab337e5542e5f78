"""align.plan's RL stage."""

import pytest

from align.plan.memory import ModelShape, Parallel, Training, plan


def test_rl_counts_the_optional_reference_and_the_colocated_vllm_share():
    """RL: one sequence (prompt + completion) per row, TRL's fused head as in SFT; a reference copy only for
    the KL term; vLLM's colocated share added as it is."""
    shape, parallel = ModelShape(), Parallel(world=8, ep_size=8)
    sft = plan(shape, parallel, Training(stage="sft", packing=False))
    rl = plan(shape, parallel, Training(stage="rl", packing=False, reference="none"))
    assert rl.per_gpu["total"] == pytest.approx(sft.per_gpu["total"]) and rl.per_gpu["reference"] == 0
    with_kl = plan(shape, parallel, Training(stage="rl", reference="copy"))
    assert with_kl.per_gpu["reference"] == pytest.approx(with_kl.per_gpu["weights"])  # same sharding, bf16
    colocated = plan(shape, parallel, Training(stage="rl", reference="none", vllm_colocate_bytes=30 * 2**30))
    assert colocated.per_gpu["total"] - rl.per_gpu["total"] == pytest.approx(30 * 2**30)
    with pytest.raises(ValueError, match="RL reference must be none"):
        plan(shape, parallel, Training(stage="rl", reference="precomputed"))
