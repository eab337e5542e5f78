"""SFT options in one process (no DeepSpeed): packing, gradient checkpointing, frozen router, LoRA."""

import pytest
import torch
from safetensors import safe_open
from trl import ModelConfig, ScriptArguments, TrlParser

from align.data.demo import write_demo_data
from align.sft.__main__ import main
from align.sft.config import KlearSFTConfig
from align.training.run import release_training_memory
from tests.distributed import REPO_ROOT

pytestmark = pytest.mark.slow


def run_sft(tmp_path, tiny_klear_dir, *extra):
    data = write_demo_data(tmp_path / "data", n_train=64, n_eval=4)
    argv = ["--config", "configs/sft/tiny.yaml", "--model_name_or_path", str(tiny_klear_dir),
            "--dataset_name", str(data["sft"]), "--output_dir", str(tmp_path / "out"), "--max_steps", "4",
            "--logging_steps", "1", "--report_to", "none", "--save_strategy", "no", *extra]
    parser = TrlParser((ScriptArguments, KlearSFTConfig, ModelConfig))
    return main(*parser.parse_args_and_config(argv))


def router_weight(path) -> torch.Tensor:
    with safe_open(str(path), "pt") as f:
        return f.get_tensor("model.layers.0.mlp.gate.weight")


def test_packing_gradient_checkpointing_and_frozen_router(tmp_path, tiny_klear_dir, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # recipes are read relative to the repository root
    trainer = run_sft(tmp_path, tiny_klear_dir, "--packing", "true", "--packing_strategy", "bfd",
                      "--gradient_checkpointing", "true", "--freeze_router", "true")
    out = tmp_path / "out"
    # frozen: the saved (bf16, like the recipe) router is the starting one in bf16
    start = router_weight(tiny_klear_dir / "model.safetensors").to(torch.bfloat16)
    assert torch.equal(router_weight(out / "model.safetensors"), start)
    # checkpointing recomputes every layer in the backward pass; each routed token is still counted once
    counts = trainer.expert_load.total
    tokens = max(e.get("num_tokens", 0) for e in trainer.state.log_history)
    assert counts.sum(-1).tolist() == [int(tokens) * 2] * 2  # 2 sparse layers, top-2
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    # packed rows: fewer, longer sequences than the 64 conversations
    assert trainer.train_dataset.num_rows < 64
    # before judging, the trainer lets go of everything the answer engine would need the memory of
    release_training_memory(trainer)
    assert trainer.model is None and trainer.optimizer is None and not trainer.accelerator._models


def test_lora_on_attention_and_the_shared_expert_leaves_the_base_untouched(tmp_path, tiny_klear_dir, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    run_sft(tmp_path, tiny_klear_dir, "--use_peft", "true", "--lora_r", "4", "--lora_target_modules",
            "q_proj", "v_proj", "shared_experts.gate_proj", "shared_experts.up_proj", "shared_experts.down_proj")
    out = tmp_path / "out"
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any("shared_experts.up_proj.lora_A" in k for k in keys)
    assert any("self_attn.q_proj.lora_B" in k for k in keys)
    assert not (out / "model.safetensors").exists()


def test_lora_on_the_fused_routed_experts_without_expert_parallelism(tmp_path, tiny_klear_dir, monkeypatch):
    """PEFT targets the experts' 3D parameters directly (it needs lora_dropout 0 for that)."""
    monkeypatch.chdir(REPO_ROOT)
    run_sft(tmp_path, tiny_klear_dir, "--use_peft", "true", "--lora_r", "4", "--lora_dropout", "0",
            "--lora_target_modules", "q_proj", "--lora_target_parameters",
            "mlp.routed.experts.gate_up_proj", "mlp.routed.experts.down_proj")
    with safe_open(str(tmp_path / "out" / "adapter_model.safetensors"), "pt") as f:
        expert_keys = [k for k in f.keys() if ".mlp.routed.experts." in k]
    assert len(expert_keys) == 2 * 2 * 2  # 2 layers x (gate_up_proj, down_proj) x (lora_A, lora_B)
