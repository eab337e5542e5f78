"""Expert loads are counted by forward hooks, in int64, once per routed token."""

import pytest
import torch

import align  # noqa: F401
from align.models.klear import KlearConfig, KlearMoeForCausalLM
from align.training.moe import ExpertLoadCounter
from tests.models.test_klear import TINY


@pytest.mark.parametrize("gradient_checkpointing", [False, True])
def test_every_routed_token_is_counted_once_even_when_checkpointing_recomputes(gradient_checkpointing):
    config = KlearConfig(**TINY)
    model = KlearMoeForCausalLM(config).train()
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    counter = ExpertLoadCounter(model)
    ids = torch.randint(0, config.vocab_size, (2, 5), generator=torch.Generator().manual_seed(0))
    model(ids, labels=ids).loss.backward()  # the backward pass recomputes the checkpointed layers

    load = counter.pop()
    n_sparse = sum(config.is_sparse_layer(i) for i in range(config.num_hidden_layers))
    assert load.dtype == torch.int64 and load.shape == (n_sparse, config.num_experts)
    assert load.sum(-1).tolist() == [2 * 5 * config.num_experts_per_tok] * n_sparse
    assert counter.pop().sum() == 0  # popped means reset

    model.eval()
    with torch.no_grad():
        model(ids)
    assert counter.pop().sum() == 0  # evaluation forwards are not training load
    counter.remove()
    model.train()(ids)
    assert counter.pop().sum() == 0  # removed hooks count nothing
