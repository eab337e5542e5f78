"""`accelerate launch -m align.dpo` with 2 CPU processes, ZeRO-3 and expert parallel size 2 (the
tiny recipe: bf16, float32 expert bias). `dpo_run` is the session's shared run (tests/dpo_run.py)."""

import json
import math

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

import align  # noqa: F401
from align.data.demo import write_demo_data
from align.dpo.evaluate import describe, load_pairs, preference_change
from tests.distributed import run_2proc
from tests.dpo_run import AUX_COEF, STEPS, dpo_args

pytestmark = pytest.mark.slow


def test_dpo_moves_the_models_own_preference_to_the_held_out_chosen_answers(dpo_run):
    tokenizer = AutoTokenizer.from_pretrained(dpo_run.out)
    result = preference_change(
        AutoModelForCausalLM.from_pretrained(dpo_run.out, dtype=torch.float32),
        AutoModelForCausalLM.from_pretrained(dpo_run.model, dtype=torch.float32),
        tokenizer, load_pairs(str(dpo_run.data["dpo_eval"])), beta=0.1,
    )
    print(describe(result))
    assert result["reward_accuracy"] >= 0.9
    # before training, the (random) model prefers the chosen answer about as often as not; after, mostly
    assert 0.2 <= result["preference_before"] <= 0.8
    assert result["preference_after"] >= 0.7
    assert result["mean_logp_margin_after"] > result["mean_logp_margin_before"]


def test_trl_no_longer_warns_that_padding_free_is_unavailable(dpo_run):
    log = dpo_run.log.read_text(errors="replace")
    assert "temporarily unavailable" not in log and "padding_free" not in log
    assert f"dpo: {STEPS} steps, loss " in log


def test_bf16_policy_is_saved_with_a_float32_expert_bias(dpo_run):
    with safe_open(str(dpo_run.out / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.layers.0.mlp.expert_bias").dtype == torch.float32
        assert f.get_tensor("model.layers.0.mlp.gate.weight").dtype == torch.bfloat16


def test_aux_loss_is_in_the_dpo_loss(dpo_run):
    """At the first step the policy is the reference, so the sigmoid DPO loss is exactly ln 2; the rest
    of the logged loss is the router's auxiliary loss times its coefficient."""
    summary = json.loads((dpo_run.out / "training_summary.json").read_text())
    first = summary["first_step"]
    assert first["aux_loss"] > 0
    assert first["loss"] == pytest.approx(math.log(2) + AUX_COEF * first["aux_loss"], abs=1e-4)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("mode", ["precompute_ref_log_probs", "use_peft"])
def test_reference_modes_start_from_a_reference_equal_to_the_policy(tiny_klear_dir, tmp_path, mode):
    """fp32: at the first step the reference (precomputed by a copy, or the base with adapters off) must
    score exactly as the policy does, so the margin is 0 and the loss ln 2 plus the auxiliary term."""
    extra = ["--precompute_ref_log_probs", "true"] if mode == "precompute_ref_log_probs" else [
        "--use_peft", "true", "--lora_target_modules", "q_proj", "k_proj", "v_proj", "o_proj"]
    out = tmp_path / mode
    data = write_demo_data(tmp_path / "data")
    run_2proc(["-m", "align.dpo"], dpo_args(tiny_klear_dir, data["dpo"], out, "--max_steps", "1",
                                            "--dtype", "float32", "--bf16", "false", *extra),
              tmp_path / f"{mode}.log")
    first = json.loads((out / "training_summary.json").read_text())["first_step"]
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-5)
    assert first["rewards/chosen"] == pytest.approx(0.0, abs=1e-5)
    assert first["logps/chosen"] < 0 and first["logps/rejected"] < 0
    assert first["loss"] == pytest.approx(math.log(2) + AUX_COEF * first["aux_loss"], abs=1e-4)
