"""A 2-process run killed hard mid-training and resumed from its last checkpoint ends where an
uninterrupted run ends.

DPO only: SFT resumes through the same trainer mixin and DeepSpeed checkpoint, and DPO's run holds
more state to restore (a reference engine besides the policy, the aux-free expert bias, packed pairs);
the SFT variant cost three more launches (about three minutes of CI) and found nothing DPO's did not."""

import json

import pytest

from align.data.demo import write_demo_data
from tests.distributed import run_2proc, run_2proc_until

pytestmark = pytest.mark.slow

STEPS, CHECKPOINT_AT = 12, 6


def final_loss(output_dir) -> float:
    state = json.loads((output_dir / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return next(e["loss"] for e in state["log_history"] if e.get("step") == STEPS and "loss" in e)


def test_kill_and_resume_ends_with_the_uninterrupted_loss(tmp_path, tiny_klear_dir):
    data = write_demo_data(tmp_path / "data")
    module = ["-m", "align.dpo"]
    common = ["--config", "configs/dpo/tiny.yaml", "--model_name_or_path", str(tiny_klear_dir),
              "--dataset_name", str(data["dpo"]), "--max_steps", str(STEPS), "--logging_steps", "1",
              "--save_strategy", "steps", "--save_steps", str(CHECKPOINT_AT), "--save_total_limit", "3",
              "--report_to", "none"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_2proc(module, [*common, "--output_dir", str(straight)], tmp_path / "straight.log")

    checkpoint = killed / f"checkpoint-{CHECKPOINT_AT}"
    run_2proc_until(
        module, [*common, "--output_dir", str(killed)], tmp_path / "killed.log",
        # trainer_state.json is the last file the Trainer writes into a checkpoint
        stop_when=lambda: (checkpoint / "trainer_state.json").exists(),
    )
    assert not (killed / f"checkpoint-{STEPS}").exists(), "the run finished before it was killed"

    run_2proc(module, [*common, "--output_dir", str(killed), "--resume_from_checkpoint", str(checkpoint)],
              tmp_path / "resumed.log")
    assert final_loss(killed) == pytest.approx(final_loss(straight), abs=1e-5)
