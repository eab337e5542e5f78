"""Checkpoints as released (several safetensors shards + index) and bf16 with a float32 expert bias."""

import json

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

import align  # noqa: F401  (registers Klear)
from align.models.klear import KlearConfig
from align.training.moe import aux_free_bias_update
from tests.models.test_klear import TINY, official_state_dict


def write_sharded_official(path, config: KlearConfig, sd: dict, shards: int) -> None:
    """The released layout: model-0000i-of-0000n.safetensors and model.safetensors.index.json."""
    keys = sorted(sd)
    names = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    weight_map = {}
    for i, name in enumerate(names):
        part = {k: sd[k] for k in keys[i::shards]}
        save_file(part, str(path / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    total = sum(t.numel() * t.element_size() for t in sd.values())
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    raw = {k: v for k, v in config.to_dict().items() if k != "rope_parameters"}
    raw.update(model_type="Klear", architectures=["KlearMoeForCausalLM"], rope_theta=500000.0)
    (path / "config.json").write_text(json.dumps(raw))


def test_sharded_official_checkpoint_loads_and_saves_back_sharded_with_an_index(tmp_path):
    config = KlearConfig(**TINY)
    sd = official_state_dict(config)
    source = tmp_path / "released"
    source.mkdir()
    write_sharded_official(source, config, sd, shards=3)  # one expert's keys spread over all shards

    model, info = AutoModelForCausalLM.from_pretrained(source, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    I = config.moe_intermediate_size
    torch.testing.assert_close(model.model.layers[2].mlp.routed.experts.gate_up_proj[7, I:],
                               sd["model.layers.2.mlp.experts.7.up_proj.weight"])

    out = tmp_path / "saved"
    model.save_pretrained(out, max_shard_size="40KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 2 and not (out / "model.safetensors").exists()
    assert set(index["weight_map"]) == set(sd)  # official per-expert names, nothing else
    for name in files:
        with safe_open(str(out / name), "pt") as f:
            for key in f.keys():
                assert index["weight_map"][key] == name
                torch.testing.assert_close(f.get_tensor(key), sd[key], msg=key)
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.arange(12)[None] % config.vocab_size
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits)


def test_expert_bias_stays_float32_in_a_bf16_model_and_checkpoint(tmp_path):
    config = KlearConfig(**TINY)
    sd = official_state_dict(config)
    sd["model.layers.0.mlp.expert_bias"] = torch.full((config.num_experts,), 0.6)
    source = tmp_path / "released"
    source.mkdir()
    write_sharded_official(source, config, sd, shards=1)

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16)
    router = model.model.layers[0].mlp.routed.gate
    assert model.lm_head.weight.dtype == torch.bfloat16 and router.weight.dtype == torch.bfloat16
    assert router.e_score_correction_bias.dtype == torch.float32
    # one aux-free step of 1e-3 at |bias| = 0.6: bf16 (spacing 2^-8 there) would lose it entirely
    load = torch.arange(config.num_experts)
    aux_free_bias_update(router.e_score_correction_bias, load, 1e-3)
    assert router.e_score_correction_bias[0].item() == torch.tensor(0.6 + 1e-3).item()
    assert torch.tensor(0.6, dtype=torch.bfloat16) + 1e-3 == torch.tensor(0.6, dtype=torch.bfloat16)

    out = tmp_path / "saved"
    model.save_pretrained(out)
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.layers.0.mlp.expert_bias").dtype == torch.float32
        assert f.get_tensor("model.layers.0.mlp.expert_bias")[0].item() == router.e_score_correction_bias[0].item()
        assert f.get_tensor("model.layers.0.mlp.gate.weight").dtype == torch.bfloat16
