"""`accelerate launch -m align.dpo` (2 CPU processes, ZeRO-3, expert parallel 2) on a tiny Klear carrying
Qwen's real tokenizer and its chat template without generation markers, with an eval set."""

import json
import math

import pytest
from datasets import load_from_disk

from align.data.demo import write_demo_data
from tests.distributed import run_2proc

pytestmark = pytest.mark.slow

AUX_COEF = 0.001


def test_dpo_with_qwens_tokenizer_starts_at_ln2_and_evaluates(tmp_path, tiny_klear_qwen_dir):
    data = write_demo_data(tmp_path / "data", n_train=32, n_eval=4)
    out = tmp_path / "out"
    run_2proc(["-m", "align.dpo"],
              ["--config", "configs/dpo/tiny.yaml", "--model_name_or_path", str(tiny_klear_qwen_dir),
               "--dataset_name", str(data["dpo"]), "--output_dir", str(out), "--report_to", "none",
               "--save_strategy", "no", "--logging_steps", "1", "--max_steps", "2", "--per_device_train_batch_size", "4",
               "--router_aux_loss_coef", str(AUX_COEF), "--eval_strategy", "steps", "--eval_steps", "2",
               "--eval_dataset_name", str(data["dpo_eval"])],
              tmp_path / "launch.log", timeout=600)
    summary = json.loads((out / "training_summary.json").read_text())
    first = summary["first_step"]
    assert summary["global_steps"] == 2 and summary["world_size"] == 2
    # at the first step the policy is the reference: the sigmoid DPO loss is ln 2, plus the router's aux loss
    assert first["loss"] == pytest.approx(math.log(2) + AUX_COEF * first["aux_loss"], abs=1e-4)
    card = json.loads((out / "data_card.json").read_text())
    assert card["kept"] == 32 and card["eval"]["kept"] == 8
    assert "'eval_loss'" in (tmp_path / "launch.log").read_text(errors="replace")
    pairs = load_from_disk(str(out / "train_data"))
    assert pairs.column_names == ["prompt", "chosen", "rejected"]
    assert pairs[0]["prompt"][-1]["role"] == "user" and pairs[0]["chosen"][0]["role"] == "assistant"
