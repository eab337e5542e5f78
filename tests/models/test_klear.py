"""The Klear model: checkpoint layout, forward against a slow reference, routing, cache, padding."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM

import align  # noqa: F401  (registers Klear)
from align.models.klear import KlearConfig, KlearMoeForCausalLM, KlearSparseMoeBlock

TINY = dict(
    vocab_size=97,
    hidden_size=32,
    intermediate_size=48,
    moe_intermediate_size=16,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    num_experts=8,
    num_experts_per_tok=3,
    max_position_embeddings=256,
    mlp_only_layers=[1],  # layer 1 is dense: the schedule is exercised too
)


def official_state_dict(config: KlearConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the released checkpoint's key names, built without the model class."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.1):
        return torch.randn(*shape, generator=g) * scale

    H, I, E = config.hidden_size, config.moe_intermediate_size, config.num_experts
    d = config.head_dim
    sd = {"model.embed_tokens.weight": rand(config.vocab_size, H, scale=1.0)}
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        sd[p + "self_attn.q_proj.weight"] = rand(config.num_attention_heads * d, H)
        sd[p + "self_attn.k_proj.weight"] = rand(config.num_key_value_heads * d, H)
        sd[p + "self_attn.v_proj.weight"] = rand(config.num_key_value_heads * d, H)
        sd[p + "self_attn.o_proj.weight"] = rand(H, config.num_attention_heads * d)
        sd[p + "self_attn.q_norm.weight"] = 1 + rand(d)
        sd[p + "self_attn.k_norm.weight"] = 1 + rand(d)
        sd[p + "input_layernorm.weight"] = 1 + rand(H)
        sd[p + "post_attention_layernorm.weight"] = 1 + rand(H)
        if config.is_sparse_layer(i):
            sd[p + "mlp.gate.weight"] = rand(E, H, scale=1.0)
            sd[p + "mlp.expert_bias"] = rand(E, scale=0.3)
            sd[p + "mlp.coefficient.weight"] = rand(2, H, scale=1.0)
            sd[p + "mlp.coefficient.bias"] = rand(2, scale=1.0)
            for e in range(E):
                sd[p + f"mlp.experts.{e}.gate_proj.weight"] = rand(I, H)
                sd[p + f"mlp.experts.{e}.up_proj.weight"] = rand(I, H)
                sd[p + f"mlp.experts.{e}.down_proj.weight"] = rand(H, I)
            shared = I * config.n_shared_experts
            sd[p + "mlp.shared_experts.gate_proj.weight"] = rand(shared, H)
            sd[p + "mlp.shared_experts.up_proj.weight"] = rand(shared, H)
            sd[p + "mlp.shared_experts.down_proj.weight"] = rand(H, shared)
        else:
            sd[p + "mlp.gate_proj.weight"] = rand(config.intermediate_size, H)
            sd[p + "mlp.up_proj.weight"] = rand(config.intermediate_size, H)
            sd[p + "mlp.down_proj.weight"] = rand(H, config.intermediate_size)
    sd["model.norm.weight"] = 1 + rand(H)
    sd["lm_head.weight"] = rand(config.vocab_size, H)
    return sd


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory):
    """A checkpoint directory written by hand in the official layout, as the released model is."""
    path = tmp_path_factory.mktemp("official")
    config = KlearConfig(**TINY)
    sd = official_state_dict(config)
    save_file(sd, str(path / "model.safetensors"), metadata={"format": "pt"})
    raw = {k: v for k, v in config.to_dict().items() if k != "rope_parameters"}
    raw.update(model_type="Klear", architectures=["KlearMoeForCausalLM"], rope_theta=500000.0, rope_scaling=None)
    (path / "config.json").write_text(json.dumps(raw))
    return path, config, sd


# --- an independent slow reference, written from the architecture description --------------------


def _rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _swiglu(x, gate, up, down):
    return (F.silu(x @ gate.T) * (x @ up.T)) @ down.T


def _rope(x, positions, theta):  # x: [heads, T, d]
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2).float() / d)
    ang = positions[:, None].float() * inv[None]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    rotated = torch.cat([-x[..., d // 2 :], x[..., : d // 2]], -1)
    return x * cos + rotated * sin


def reference_logits(sd, c: KlearConfig, ids: torch.Tensor) -> torch.Tensor:
    """One sequence, token by token for the MoE part, no batching tricks."""
    h = sd["model.embed_tokens.weight"][ids]
    T, d = len(ids), c.head_dim
    pos = torch.arange(T)
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        x = _rms(h, sd[p + "input_layernorm.weight"], c.rms_norm_eps)
        q = (x @ sd[p + "self_attn.q_proj.weight"].T).view(T, -1, d).transpose(0, 1)
        k = (x @ sd[p + "self_attn.k_proj.weight"].T).view(T, -1, d).transpose(0, 1)
        v = (x @ sd[p + "self_attn.v_proj.weight"].T).view(T, -1, d).transpose(0, 1)
        q = _rope(_rms(q, sd[p + "self_attn.q_norm.weight"], c.rms_norm_eps), pos, 500000.0)
        k = _rope(_rms(k, sd[p + "self_attn.k_norm.weight"], c.rms_norm_eps), pos, 500000.0)
        group = c.num_attention_heads // c.num_key_value_heads
        k, v = k.repeat_interleave(group, 0), v.repeat_interleave(group, 0)
        att = (q @ k.transpose(1, 2)) / math.sqrt(d)
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
        h = h + (att @ v).transpose(0, 1).reshape(T, -1) @ sd[p + "self_attn.o_proj.weight"].T

        x = _rms(h, sd[p + "post_attention_layernorm.weight"], c.rms_norm_eps)
        if not c.is_sparse_layer(i):
            h = h + _swiglu(x, sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"], sd[p + "mlp.down_proj.weight"])
            continue
        out = torch.zeros_like(x)
        for t in range(T):
            scores = torch.sigmoid(x[t].double() @ sd[p + "mlp.gate.weight"].double().T)
            chosen = torch.topk(scores + sd[p + "mlp.expert_bias"].double(), c.num_experts_per_tok).indices
            w = scores[chosen] / scores[chosen].sum()
            routed = sum(
                float(w_k) * _swiglu(
                    x[t],
                    sd[p + f"mlp.experts.{e}.gate_proj.weight"],
                    sd[p + f"mlp.experts.{e}.up_proj.weight"],
                    sd[p + f"mlp.experts.{e}.down_proj.weight"],
                )
                for w_k, e in zip(w, chosen.tolist())
            )
            shared = _swiglu(x[t], *(sd[p + f"mlp.shared_experts.{n}_proj.weight"] for n in ("gate", "up", "down")))
            coef = torch.softmax(x[t] @ sd[p + "mlp.coefficient.weight"].T + sd[p + "mlp.coefficient.bias"], -1)
            out[t] = routed * coef[0] + shared * coef[1]
        h = h + out
    return _rms(h, sd["model.norm.weight"], c.rms_norm_eps) @ sd["lm_head.weight"].T


# --- checkpoint layout ---------------------------------------------------------------------------


def test_loads_official_layout_with_no_missing_unexpected_or_mismatched_keys(official_checkpoint):
    path, config, sd = official_checkpoint
    model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    assert isinstance(model, KlearMoeForCausalLM)
    assert info["missing_keys"] == set() or not info["missing_keys"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    block = model.model.layers[0].mlp
    I = config.moe_intermediate_size
    torch.testing.assert_close(block.routed.experts.gate_up_proj[5, :I], sd["model.layers.0.mlp.experts.5.gate_proj.weight"])
    torch.testing.assert_close(block.routed.experts.gate_up_proj[5, I:], sd["model.layers.0.mlp.experts.5.up_proj.weight"])
    torch.testing.assert_close(block.routed.experts.down_proj[2], sd["model.layers.0.mlp.experts.2.down_proj.weight"])
    torch.testing.assert_close(block.routed.gate.e_score_correction_bias, sd["model.layers.0.mlp.expert_bias"])
    assert model.config.rope_parameters["rope_theta"] == 500000.0


def test_save_writes_the_official_layout_back(official_checkpoint, tmp_path):
    path, _, sd = official_checkpoint
    AutoModelForCausalLM.from_pretrained(path).save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "model.safetensors"))
    assert set(saved) == set(sd)
    for key in sd:
        torch.testing.assert_close(saved[key], sd[key], msg=key)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["model_type"] == "Klear" and written["architectures"] == ["KlearMoeForCausalLM"]
    assert written["rope_theta"] == 500000.0


def test_lowercase_model_type_loads(official_checkpoint, tmp_path):
    path, _, _ = official_checkpoint
    raw = json.loads((path / "config.json").read_text())
    raw["model_type"] = "klear"
    (tmp_path / "config.json").write_text(json.dumps(raw))
    (tmp_path / "model.safetensors").symlink_to(path / "model.safetensors")
    assert isinstance(AutoConfig.from_pretrained(tmp_path), KlearConfig)
    assert isinstance(AutoModelForCausalLM.from_pretrained(tmp_path), KlearMoeForCausalLM)


# --- the forward pass ----------------------------------------------------------------------------


@pytest.mark.parametrize("experts_implementation", ["eager", "grouped_mm", "batched_mm"])
def test_forward_matches_slow_reference(official_checkpoint, experts_implementation):
    path, config, sd = official_checkpoint
    model = AutoModelForCausalLM.from_pretrained(path, experts_implementation=experts_implementation).eval()
    ids = torch.randint(0, config.vocab_size, (11,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(ids[None]).logits[0]
    torch.testing.assert_close(logits, reference_logits(sd, config, ids), atol=2e-4, rtol=1e-4)


def test_sparse_layer_schedule():
    config = KlearConfig(**{**TINY, "num_hidden_layers": 6, "mlp_only_layers": [4], "decoder_sparse_step": 2})
    model = KlearMoeForCausalLM(config)
    sparse = [isinstance(layer.mlp, KlearSparseMoeBlock) for layer in model.model.layers]
    assert sparse == [False, True, False, True, False, True]  # (i+1) % 2 == 0, and 4 is dense anyway
    assert sparse == [config.is_sparse_layer(i) for i in range(6)]


def test_expert_bias_changes_the_choice_but_not_the_weights():
    torch.manual_seed(0)
    router = KlearMoeForCausalLM(KlearConfig(**TINY)).routers()[0]
    x = torch.randn(5, TINY["hidden_size"])
    with torch.no_grad():
        router.weight.normal_()
        logits, weights, chosen = router(x)
        scores = logits.sigmoid()
        # push an expert that was never chosen into every token's top-k
        never = next(e for e in range(TINY["num_experts"]) if not (chosen == e).any())
        router.e_score_correction_bias[never] = 10.0
        _, biased_weights, biased_chosen = router(x)
    assert (biased_chosen == never).any(dim=-1).all()
    expected = scores.gather(-1, biased_chosen)
    torch.testing.assert_close(biased_weights, expected / expected.sum(-1, keepdim=True))
    assert logits.dtype == torch.float32


def test_router_logits_are_float32_in_a_bf16_model():
    model = KlearMoeForCausalLM(KlearConfig(**TINY)).to(torch.bfloat16)
    out = model(torch.randint(0, TINY["vocab_size"], (1, 6)), output_router_logits=True)
    assert all(r.dtype == torch.float32 for r in out.router_logits)
    assert out.logits.dtype == torch.bfloat16


def test_blend_is_softmax_weighted_not_a_sum():
    torch.manual_seed(0)
    block = KlearSparseMoeBlock(KlearConfig(**TINY))
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.5)
        block.routed.experts.down_proj.zero_()  # the routed experts output exactly zero
    x = torch.randn(2, 4, TINY["hidden_size"])
    with torch.no_grad():
        coef = torch.softmax(block.coefficient(x), -1)
        shared = block.shared_experts(x)
        torch.testing.assert_close(block(x), shared * coef[..., 1:2])
        assert not torch.allclose(block(x), shared)


@pytest.mark.parametrize("experts_implementation", ["grouped_mm", "batched_mm"])
def test_batched_experts_equal_the_per_expert_loop_in_values_and_gradients(experts_implementation):
    config = KlearConfig(**TINY)
    torch.manual_seed(0)
    model = KlearMoeForCausalLM(config)
    ids = torch.randint(0, config.vocab_size, (3, 9))
    results = {}
    for impl in ("eager", experts_implementation):
        model.set_experts_implementation(impl)
        model.zero_grad()
        out = model(ids, labels=ids, output_router_logits=True)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[impl] = (out.logits.detach(), grads)
    torch.testing.assert_close(results["eager"][0], results[experts_implementation][0], atol=1e-5, rtol=1e-5)
    assert results["eager"][1].keys() == results[experts_implementation][1].keys()
    for name, grad in results["eager"][1].items():
        torch.testing.assert_close(grad, results[experts_implementation][1][name], atol=1e-5, rtol=1e-4, msg=name)


# --- generation and padding ----------------------------------------------------------------------


def test_greedy_generation_with_cache_equals_recomputing(official_checkpoint):
    path, config, _ = official_checkpoint
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    prompt = torch.randint(0, config.vocab_size, (1, 5), generator=torch.Generator().manual_seed(2))
    cached = model.generate(prompt, max_new_tokens=12, do_sample=False, use_cache=True, eos_token_id=None)
    # Cached and recomputed logits agree to float32 rounding, not bit for bit: a step whose top two
    # logits are within 1e-4 may pick either token, and every later step then differs. Compare the
    # tokens exactly up to the first such near-tie (none with this seed on the machines seen so far).
    ids, decided = prompt, 12
    with torch.no_grad():
        for step in range(12):
            logits = model(ids, use_cache=False).logits[:, -1]
            top_two = logits.topk(2, dim=-1).values[0]
            if decided == 12 and top_two[0] - top_two[1] < 1e-4:
                decided = step
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    assert decided >= 8, f"near-tie at step {decided}: the comparison would say little"
    assert torch.equal(cached[:, : 5 + decided], ids[:, : 5 + decided])


def test_left_padding_gives_the_same_logits_as_unpadded_rows(official_checkpoint):
    path, config, _ = official_checkpoint
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    g = torch.Generator().manual_seed(3)
    rows = [torch.randint(1, config.vocab_size, (n,), generator=g) for n in (9, 5, 2)]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :], mask[i, width - len(r) :] = r, 1
    with torch.no_grad():
        batched = model(ids, attention_mask=mask).logits
        for i, r in enumerate(rows):
            alone = model(r[None]).logits[0]
            torch.testing.assert_close(batched[i, width - len(r) :], alone, atol=1e-5, rtol=1e-5)


# --- training support ----------------------------------------------------------------------------


def test_aux_loss_is_returned_weighted_into_the_loss_and_differentiable():
    config = KlearConfig(**TINY, router_aux_loss_coef=0.5)
    torch.manual_seed(0)
    model = KlearMoeForCausalLM(config)
    ids = torch.randint(0, config.vocab_size, (2, 8))
    with_aux = model(ids, labels=ids, output_router_logits=True)
    without = model(ids, labels=ids)
    assert without.aux_loss is None
    assert with_aux.aux_loss.requires_grad and with_aux.aux_loss > 0
    torch.testing.assert_close(with_aux.loss, without.loss + 0.5 * with_aux.aux_loss)
    with_aux.aux_loss.backward()
    assert model.model.layers[0].mlp.routed.gate.weight.grad.abs().sum() > 0


def test_aux_loss_matches_transformers_mixtral_formula_and_ignores_padding():
    """The forward returns the loss TRL's trainers add, computed only over real tokens."""
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    config = KlearConfig(**TINY)
    torch.manual_seed(0)
    model = KlearMoeForCausalLM(config).eval()
    ids = torch.randint(1, config.vocab_size, (2, 6))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
    out = model(ids, attention_mask=mask, output_router_logits=True)
    expected = load_balancing_loss_func(out.router_logits, config.num_experts, config.num_experts_per_tok, mask)
    torch.testing.assert_close(out.aux_loss, expected)
    # the real tokens alone give the same loss as the left-padded batch
    alone = [model(ids[i : i + 1, 6 - int(mask[i].sum()) :], output_router_logits=True).router_logits for i in (0, 1)]
    joined = tuple(torch.cat([a, b]) for a, b in zip(alone[0], alone[1], strict=True))
    unpadded = load_balancing_loss_func(joined, config.num_experts, config.num_experts_per_tok)
    torch.testing.assert_close(out.aux_loss, unpadded, atol=1e-5, rtol=1e-5)


def test_full_size_config_on_meta_device_allocates_nothing():
    config = KlearConfig()  # the released Klear-46B-A2.5B
    with torch.device("meta"):
        model = KlearMoeForCausalLM(config)
    total = sum(p.numel() for p in model.parameters())
    assert all(p.is_meta for p in model.parameters())
    assert 45e9 < total < 47e9
    # 8 of 256 experts run per token: "A2.5B"
    expert = 3 * config.hidden_size * config.moe_intermediate_size
    active = total - (config.num_experts - config.num_experts_per_tok) * expert * config.num_hidden_layers
    assert 2.4e9 < active < 2.6e9
    from accelerate import init_empty_weights

    with init_empty_weights():
        empty = AutoModelForCausalLM.from_config(config)
    assert all(p.is_meta for p in empty.parameters())
