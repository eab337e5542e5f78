"""A 2-process run killed hard mid-training and relaunched with the same command resumes from its last
complete checkpoint (skipping a later, damaged one) and ends where an uninterrupted run ends: steps, token
counts, expert loads, final loss (issue #18 items 7 and 9).

The uninterrupted run is the session's shared DPO run (`dpo_run`, tests/dpo_run.py: the same command without
checkpoints), so this test adds two launches, not three. The checkpoint is late in the run: the killed launch
is the cheap part (steps cost little beside a launch), and the relaunch trains only the steps after it.

DPO only: SFT resumes through the same trainer mixin and DeepSpeed checkpoint, and DPO's run holds
more state to restore (a reference engine besides the policy, the aux-free expert bias, packed pairs);
the SFT variant cost three more launches (about three minutes of CI) and found nothing DPO's did not."""

import json
import shutil

import pytest

from align.training.checkpoints import checkpoint_problem
from tests.distributed import run_2proc, run_2proc_until
from tests.dpo_run import STEPS
from tests.expert_load import assert_same_expert_load

pytestmark = pytest.mark.slow

CHECKPOINT_AT = STEPS - 6  # six steps left for the kill to land before the run would end


def test_the_same_command_resumes_a_killed_run_from_its_last_complete_checkpoint(tmp_path, dpo_run):
    module = ["-m", "align.dpo"]
    killed = tmp_path / "killed"
    command = dpo_run.args(killed, "--save_strategy", "steps", "--save_steps", str(CHECKPOINT_AT),
                           "--save_total_limit", "3")

    checkpoint = killed / f"checkpoint-{CHECKPOINT_AT}"
    run_2proc_until(
        module, command, tmp_path / "killed.log",
        # not trainer_state.json alone: rank 1 may still be writing its RNG state after rank 0 wrote it
        stop_when=lambda: checkpoint_problem(checkpoint) is None,
    )
    assert not (killed / f"checkpoint-{STEPS}").exists(), "the run finished before it was killed"
    damaged = damaged_later_checkpoint(checkpoint, CHECKPOINT_AT + 2)

    run_2proc(module, command, tmp_path / "resumed.log")  # the same command
    assert (f"holds an interrupted run (checkpoint-{CHECKPOINT_AT + 2}, no training_summary.json): resuming from "
            f"{checkpoint}, its last complete checkpoint; skipped {damaged.parent.parent.name} "
            f"({damaged.parent.name}/{damaged.name} is truncated or not a torch file)") in (tmp_path / "resumed.log").read_text()
    whole, resumed = (json.loads((d / "training_summary.json").read_text()) for d in (dpo_run.out, killed))
    assert (resumed["global_steps"], resumed["resumed_from_step"]) == (STEPS, CHECKPOINT_AT)
    assert whole["global_steps"] == STEPS and whole["resumed_from_step"] is None
    assert resumed["train_tokens"] == whole["train_tokens"] > 0  # counted over the whole run, not since the resume
    assert_same_expert_load(resumed, whole)
    # every step is logged: the summaries' first and final losses are steps 1 and STEPS
    assert resumed["first_loss"] == pytest.approx(whole["first_loss"], abs=1e-5)
    assert resumed["final_loss"] == pytest.approx(whole["final_loss"], abs=1e-5)
    final = json.loads((killed / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())["log_history"]
    assert next(e["loss"] for e in final if e.get("step") == STEPS and "loss" in e) == resumed["final_loss"]


def damaged_later_checkpoint(checkpoint, step):
    """A copy of the complete `checkpoint` as `checkpoint-{step}`, consistent in its step, with one rank's
    model states cut short (a write killed midway): the relaunch must skip it. Returns the cut file."""
    later = checkpoint.with_name(f"checkpoint-{step}")
    shutil.copytree(checkpoint, later)
    old_tag = (later / "latest").read_text().strip()
    (later / old_tag).rename(later / f"global_step{step}")
    (later / "latest").write_text(f"global_step{step}")
    state = json.loads((later / "trainer_state.json").read_text())
    (later / "trainer_state.json").write_text(json.dumps({**state, "global_step": step}))
    assert checkpoint_problem(later) is None
    cut = later / f"global_step{step}" / "zero_pp_rank_1_mp_rank_00_model_states.pt"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    return cut
