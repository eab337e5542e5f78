"""The adapter modules of TRL/DeepSpeed/torch/transformers and datasets: what they read, and their version check
(that no other module names those privates: tests/test_adapters.py)."""

import warnings

import pytest

from align.training import compat


def test_the_adapters_read_what_the_dependencies_hold(tiny_klear_dir):
    """What the adapters return is the dependency's own value (not a copy that can go stale)."""
    import trl.kernels.chunked_logprob
    from datasets import Dataset
    from transformers import AutoConfig

    from align.data import datasets_compat
    from align.models.klear import KlearMoeForCausalLM

    assert compat.trl_lm_head_tiles() == (trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE, 32768)
    rows = Dataset.from_list([{"a": 1}])
    assert datasets_compat.content_fingerprint(rows) != datasets_compat.content_fingerprint(rows.map(lambda r: r))
    assert compat.causal_lm_class(AutoConfig.from_pretrained(tiny_klear_dir)) is KlearMoeForCausalLM
    assert datasets_compat.check_versions() == []


def test_version_differences_name_each_package_and_ignore_local_build_tags():
    written_for = {"trl": "1.16.0", "deepspeed": "0.19.8", "torch": "2.13.0"}
    assert compat.version_differences({"trl": "1.16.0", "deepspeed": "0.19.8", "torch": "2.13.0+cpu"},
                                      written_for) == []
    assert compat.version_differences({"trl": "1.17.0", "deepspeed": None, "torch": "2.13.0"}, written_for) == [
        "trl 1.17.0 (written for 1.16.0)"
    ]


def test_other_versions_are_named_in_one_warning(monkeypatch):
    monkeypatch.setattr(compat, "installed_versions", lambda names=None: {"trl": "1.17.0", "deepspeed": "0.20.0"})
    with pytest.warns(RuntimeWarning, match=r"trl 1\.17\.0 \(written for 1\.16\.0\); deepspeed 0\.20\.0"):
        compat.check_versions()


def test_the_installed_versions_are_the_ones_it_was_written_for():
    """Pins moved in pyproject.toml? Re-check what compat touches, then update WRITTEN_FOR."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compat.check_versions() == []


def test_autoep_router_with_a_float32_gate_routes_as_klears_own_in_bf16():
    """DeepSpeed's AutoEP router (the one that replaces Klear's under expert parallelism) runs its gate
    in the model's dtype; in bf16 that picks other experts than Klear's float32 router for some tokens.
    With `compute_gate_in_float32` (what align's preset adapter applies) the choices and weights match."""
    import torch
    from deepspeed.moe.ep_router import TokenChoiceTopKRouter

    from align.models.klear import KlearConfig
    from align.models.klear.modeling_klear import KlearRouter

    config = KlearConfig(hidden_size=64, num_experts=64, num_experts_per_tok=8)
    torch.manual_seed(0)
    native = KlearRouter(config)
    torch.nn.init.normal_(native.weight, std=0.5)
    native.e_score_correction_bias.normal_(0, 0.05)
    native = native.to(torch.bfloat16)
    native.e_score_correction_bias.data = native.e_score_correction_bias.float()  # as loaded: kept in float32

    def autoep_router():
        router = TokenChoiceTopKRouter(dim=64, num_experts=64, num_expert_groups=None, num_limited_groups=None,
                                       top_k=8, score_func="sigmoid", route_norm=True, route_scale=1.0,
                                       gate_bias=False).to(torch.bfloat16)
        router.gate.weight.data.copy_(native.weight.data)
        router.e_score_correction_bias = native.e_score_correction_bias.clone()
        return router

    x = torch.randn(4096, 64).to(torch.bfloat16)
    with torch.no_grad():
        _, weights, experts = native(x)
        stock = autoep_router()
        _, stock_experts, _ = stock(x)
        fixed = autoep_router()
        compat.compute_gate_in_float32(fixed.gate)
        fixed_weights, fixed_experts, _ = fixed(x)

    def chosen(e):
        return e.sort(-1).values

    assert not torch.equal(chosen(stock_experts), chosen(experts))  # bf16 gate: other experts for some tokens
    assert torch.equal(chosen(fixed_experts), chosen(experts))
    order_native, order_fixed = experts.argsort(-1), fixed_experts.argsort(-1)
    torch.testing.assert_close(fixed_weights.gather(-1, order_fixed).to(weights.dtype), weights.gather(-1, order_native))
