"""Which checkpoint a run resumes from (issue #18 item 7): a checkpoint counts only when complete, each rule
on its own; an interrupted output_dir resumes from its last complete one by default, and says so."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from align.training.checkpoints import checkpoint_problem, last_complete_checkpoint
from align.training.run import check_output_dir, remove_replaced_run
from tests.training.checkpoint_files import write_checkpoint


def test_complete_checkpoints_pass(tmp_path):
    assert checkpoint_problem(write_checkpoint(tmp_path / "zero3", 6, ranks=2)) is None
    assert checkpoint_problem(write_checkpoint(tmp_path / "plain", 6, ranks=1, deepspeed=False)) is None
    assert checkpoint_problem(write_checkpoint(tmp_path / "ddp", 6, ranks=2, deepspeed=False)) is None


def test_trainer_state_must_parse_and_name_the_step(tmp_path):
    checkpoint = write_checkpoint(tmp_path, 6)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    assert checkpoint_problem(checkpoint) == "trainer_state.json says global_step 4, not 6"
    (checkpoint / "trainer_state.json").write_text('{"global_step": 6')
    assert checkpoint_problem(checkpoint) == "trainer_state.json does not parse"
    (checkpoint / "trainer_state.json").unlink()
    assert checkpoint_problem(checkpoint) == "no trainer_state.json"


def test_every_rank_s_rng_state(tmp_path):
    checkpoint = write_checkpoint(tmp_path, 6, ranks=2)
    (checkpoint / "rng_state_1.pth").unlink()  # rank 1's other files still say the run had 2 processes
    assert checkpoint_problem(checkpoint) == "rng_state_1.pth is missing (the run had 2 processes)"
    for f in (checkpoint / "global_step6").glob("*rank_1_*"):
        f.unlink()  # nothing of rank 1 left: per-rank RNG files still mean several processes
    assert checkpoint_problem(checkpoint) == "rng_state_1.pth is missing (the run had 2 processes)"
    (checkpoint / "rng_state_0.pth").unlink()
    assert checkpoint_problem(checkpoint) == "no rng_state.pth or rng_state_{rank}.pth"


def test_deepspeed_latest_and_every_rank_s_states(tmp_path):
    checkpoint = write_checkpoint(tmp_path, 6, ranks=2)
    states = checkpoint / "global_step6"
    (states / "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    assert checkpoint_problem(checkpoint) == "global_step6/ has no optim states of rank 1 (the run had 2 processes)"
    shutil.rmtree(checkpoint)
    checkpoint = write_checkpoint(tmp_path, 6, ranks=2)
    (checkpoint / "global_step6" / "zero_pp_rank_1_mp_rank_00_model_states.pt").unlink()
    assert checkpoint_problem(checkpoint) == "global_step6/ has no model states of rank 1 (the run had 2 processes)"
    (checkpoint / "latest").write_text("global_step4")
    assert checkpoint_problem(checkpoint) == "DeepSpeed's 'latest' names 'global_step4', not 'global_step6'"
    (checkpoint / "latest").unlink()  # DeepSpeed writes it after every rank's states
    assert checkpoint_problem(checkpoint) == "no DeepSpeed 'latest' file"


def test_a_truncated_torch_file_is_named(tmp_path):
    checkpoint = write_checkpoint(tmp_path, 6, ranks=2)
    states = checkpoint / "global_step6" / "zero_pp_rank_1_mp_rank_00_model_states.pt"
    states.write_bytes(states.read_bytes()[: states.stat().st_size // 2])
    assert checkpoint_problem(checkpoint) == ("global_step6/zero_pp_rank_1_mp_rank_00_model_states.pt is truncated "
                                              "or not a torch file")


def test_without_deepspeed_the_weights_and_optimizer(tmp_path):
    checkpoint = write_checkpoint(tmp_path, 6, ranks=1, deepspeed=False)
    (checkpoint / "optimizer.pt").unlink()
    assert checkpoint_problem(checkpoint) == "no optimizer.pt"
    (checkpoint / "model.safetensors").rename(checkpoint / "model-00001-of-00002.safetensors")
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    assert checkpoint_problem(checkpoint) == "weight shard model-00002-of-00002.safetensors is missing"
    (checkpoint / "model.safetensors.index.json").unlink()
    assert checkpoint_problem(checkpoint) == "no model weights (model.safetensors)"


def test_the_last_complete_checkpoint_skips_newer_incomplete_ones(tmp_path):
    for step in (2, 9, 10):
        write_checkpoint(tmp_path, step)
    (tmp_path / "checkpoint-10" / "rng_state_1.pth").unlink()
    (tmp_path / "checkpoint-11").mkdir()
    last, skipped = last_complete_checkpoint(tmp_path)
    assert last == tmp_path / "checkpoint-9"  # by step number, not by name
    assert [(p.name, why) for p, why in skipped] == [
        ("checkpoint-11", "no trainer_state.json"),
        ("checkpoint-10", "rng_state_1.pth is missing (the run had 2 processes)"),
    ]
    assert last_complete_checkpoint(tmp_path / "absent") == (None, [])


def args(out: Path, resume=None, overwrite=False):
    return SimpleNamespace(output_dir=str(out), resume_from_checkpoint=resume, overwrite_output_dir=overwrite)


def test_an_interrupted_run_resumes_by_default_and_says_from_where(tmp_path, capsys):
    write_checkpoint(tmp_path, 4)
    write_checkpoint(tmp_path, 8)
    (tmp_path / "checkpoint-8" / "latest").unlink()
    given = args(tmp_path)
    check_output_dir(given)
    assert given.resume_from_checkpoint == str(tmp_path / "checkpoint-4")
    line, = capsys.readouterr().out.splitlines()
    assert line == (f"output_dir {str(tmp_path)!r} holds an interrupted run (checkpoint-8, no training_summary.json): "
                    f"resuming from {tmp_path / 'checkpoint-4'}, its last complete checkpoint; skipped checkpoint-8 "
                    "(no DeepSpeed 'latest' file) (to start afresh instead: --overwrite_output_dir true)")
    given = args(tmp_path, resume="true")
    check_output_dir(given)
    assert given.resume_from_checkpoint == str(tmp_path / "checkpoint-4")


def test_resume_false_over_an_interrupted_run_is_refused_naming_both_choices(tmp_path):
    write_checkpoint(tmp_path, 4)
    with pytest.raises(ValueError, match=r"holds an interrupted run \(checkpoint-4, no training_summary.json\) and "
                       r"resume_from_checkpoint is false; resume it \(leave resume_from_checkpoint out, or true\), or "
                       r"start afresh with --overwrite_output_dir true \(removes its checkpoints\)"):
        check_output_dir(args(tmp_path, resume="false"))


def test_no_complete_checkpoint_is_refused_naming_why(tmp_path):
    (write_checkpoint(tmp_path, 4) / "trainer_state.json").unlink()
    with pytest.raises(ValueError, match=r"interrupted run \(checkpoint-4, .*\) with no complete checkpoint \(skipped "
                       r"checkpoint-4 \(no trainer_state.json\)\); start afresh with --overwrite_output_dir true"):
        check_output_dir(args(tmp_path))
    with pytest.raises(ValueError, match=r"resume_from_checkpoint is true but output_dir .* holds no complete "
                       r"checkpoint \(skipped checkpoint-4 \(no trainer_state.json\)\)"):
        check_output_dir(args(tmp_path, resume="true"))
    with pytest.raises(ValueError, match=r"checkpoint-4' cannot be resumed from: no trainer_state.json"):
        check_output_dir(args(tmp_path, resume=str(tmp_path / "checkpoint-4")))


def test_overwrite_starts_afresh_and_removes_the_earlier_run_once_asked(tmp_path, capsys):
    write_checkpoint(tmp_path, 4)
    write_checkpoint(tmp_path, 8)
    (tmp_path / "data_card.json").write_text("{}")
    given = args(tmp_path, overwrite=True)
    check_output_dir(given)
    assert given.resume_from_checkpoint is None
    assert "starting afresh (overwrite_output_dir: true)" in capsys.readouterr().out
    assert (tmp_path / "checkpoint-8").is_dir()  # nothing removed before the data is read
    remove_replaced_run(given)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data_card.json"]
