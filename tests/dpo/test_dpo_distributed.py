"""`accelerate launch -m align.dpo` with 2 CPU processes, ZeRO-3 and expert parallel size 2."""

import json
import math

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

import align  # noqa: F401
from align.data.demo import write_demo_data
from align.dpo.evaluate import implicit_reward_accuracy, load_pairs
from tests.distributed import run_2proc

pytestmark = pytest.mark.slow

AUX_COEF = 0.001


def dpo_args(model, data, out, *extra):
    return ["--config", "configs/dpo/tiny.yaml", "--model_name_or_path", str(model), "--dataset_name", str(data),
            "--output_dir", str(out), "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
            "--router_aux_loss_coef", str(AUX_COEF), *extra]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_demo_data(tmp_path_factory.mktemp("dpo-data"))


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory, tiny_klear_dir, data):
    out = tmp_path_factory.mktemp("dpo") / "out"
    run_2proc(["-m", "align.dpo"], dpo_args(tiny_klear_dir, data["dpo"], out, "--max_steps", "60"),
              out.parent / "launch.log")
    return out


def test_implicit_reward_ranks_held_out_chosen_answers_first(dpo_run, tiny_klear_dir, data):
    tokenizer = AutoTokenizer.from_pretrained(dpo_run)
    result = implicit_reward_accuracy(
        AutoModelForCausalLM.from_pretrained(dpo_run), AutoModelForCausalLM.from_pretrained(tiny_klear_dir),
        tokenizer, load_pairs(str(data["dpo_eval"])), beta=0.1,
    )
    print(result)
    assert result["reward_accuracy"] >= 0.9
    # before training, the (random) model prefers the chosen answer about as often as not
    assert 0.2 <= result["reference_preference_accuracy"] <= 0.8


def test_aux_loss_is_in_the_dpo_loss(dpo_run):
    """At the first step the policy is the reference, so the sigmoid DPO loss is exactly ln 2; the rest
    of the logged loss is the router's auxiliary loss times its coefficient."""
    summary = json.loads((dpo_run / "training_summary.json").read_text())
    first = summary["first_step"]
    assert first["aux_loss"] > 0
    assert first["loss"] == pytest.approx(math.log(2) + AUX_COEF * first["aux_loss"], abs=1e-4)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("mode", ["precompute_ref_log_probs", "use_peft"])
def test_reference_modes_agree_on_the_first_step_loss(dpo_run, tiny_klear_dir, data, tmp_path, mode):
    extra = ["--precompute_ref_log_probs", "true"] if mode == "precompute_ref_log_probs" else [
        "--use_peft", "true", "--lora_target_modules", "q_proj", "k_proj", "v_proj", "o_proj"]
    out = tmp_path / mode
    run_2proc(["-m", "align.dpo"], dpo_args(tiny_klear_dir, data["dpo"], out, "--max_steps", "1", *extra),
              tmp_path / f"{mode}.log")
    copy_first = json.loads((dpo_run / "training_summary.json").read_text())["first_step"]
    first = json.loads((out / "training_summary.json").read_text())["first_step"]
    for key in ("loss", "logps/chosen", "logps/rejected", "rewards/margins"):
        assert first[key] == pytest.approx(copy_first[key], abs=1e-4), key
