"""align.plan with sequence parallelism (DeepSpeed Ulysses): figures checked by hand, and the group size a
32K recipe needs."""

import pytest

from align.plan.memory import (
    GIB,
    ModelShape,
    Parallel,
    Training,
    activation_bytes,
    plan,
    sequence_parallel_bytes,
    smallest_sequence_parallel_size,
)

KLEAR = ModelShape()  # the released Klear-46B-A2.5B sizes


def test_sequence_parallelism_divides_the_activations_and_adds_the_all_to_all_buffers_by_hand():
    """32K tokens, group of 4: each rank keeps 8,192 tokens. Ulysses' buffers per rank, bf16: k/v heads (4) are
    not replicated at sp 4, so Q + 2 KV' = 2048 + 2 x 256 = 2560; all-to-all 2 x 8192 x (2 x 2560 + 2 x 2048)
    = 150,994,944 bytes; saved q, k, v of the gathered sequence 2 x 8192 x 2560 per layer."""
    extra = sequence_parallel_bytes(KLEAR, 8192, 4, 2)
    assert extra == {"all_to_all": 150_994_944, "saved_per_layer": 2 * 8192 * 2560}
    training = Training(stage="sft", micro_batch=1, max_length=32768, gradient_checkpointing=False)
    alone = activation_bytes(KLEAR, training)
    grouped = activation_bytes(KLEAR, training, sp_size=4)
    assert grouped["layers"] == pytest.approx(alone["layers"] / 4 + 32 * extra["saved_per_layer"])
    assert grouped["all_to_all"] == extra["all_to_all"] and alone["all_to_all"] == 0
    states = plan(KLEAR, Parallel(world=16), training).per_gpu["model_states"]
    assert plan(KLEAR, Parallel(world=16, sp_size=4), training).per_gpu["model_states"] == states  # ZeRO: 1/world


def test_kv_heads_are_replicated_when_the_group_outnumbers_them():
    # sp 8 > 4 k/v heads: each k/v head goes to 2 ranks, KV' = 2 x 256
    assert sequence_parallel_bytes(KLEAR, 1000, 8, 2)["saved_per_layer"] == 2 * 1000 * (2048 + 2 * 512)


@pytest.mark.parametrize(("parallel", "needle"), [
    (Parallel(world=16, sp_size=3), "does not divide 16 GPUs"),
    (Parallel(world=12, sp_size=12), "does not divide 32 attention heads"),
    (Parallel(world=16, sp_size=8, ep_size=8), "refuses AutoEP with sequence parallelism"),
])
def test_group_sizes_that_cannot_run_are_refused(parallel, needle):
    with pytest.raises(ValueError, match=needle):
        plan(KLEAR, parallel, Training(stage="sft"))


def test_the_group_size_a_32k_recipe_needs_on_80_and_141_gib():
    """Klear-46B on 16 GPUs, ZeRO-3, one 32K trace per micro-batch, 5% headroom, 1 GiB runtime. With gradient
    checkpointing one GPU holds a whole trace; without it the activations (~250 GiB at group size 1) need a
    group of 16 on 80 GiB GPUs and of 4 on 141 GiB ones; at 64K with checkpointing, 2 on 80 GiB."""
    parallel = Parallel(world=16, nodes=2)
    for checkpointing, expected in ((True, {80: 1, 141: 1}), (False, {80: 16, 141: 4})):
        training = Training(stage="sft", micro_batch=1, max_length=32768, gradient_checkpointing=checkpointing)
        for gib, sp in expected.items():
            answer = smallest_sequence_parallel_size(KLEAR, parallel, training, 0.95 * gib * GIB, GIB)
            assert answer["sp_size"] == sp, (checkpointing, gib, answer)
    at_64k = Training(stage="sft", micro_batch=1, max_length=65536)
    assert smallest_sequence_parallel_size(KLEAR, parallel, at_64k, 0.95 * 80 * GIB, GIB)["sp_size"] == 2


def test_a_group_trains_one_micro_batch_together():
    from align.plan.memory import step_seconds

    training = Training(stage="sft", micro_batch=1, max_length=32768)
    alone = step_seconds(KLEAR, Parallel(world=16), training, 0.25, 989.0)
    grouped = step_seconds(KLEAR, Parallel(world=16, sp_size=4), training, 0.25, 989.0)
    assert grouped["tokens_per_step"] * 4 == alone["tokens_per_step"] == 16 * 32768
