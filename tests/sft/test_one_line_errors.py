"""A recipe or data error ends a stage with one line per failing rank and exit status 1; `--debug` or
KLEAR_DEBUG=1 brings the traceback back."""

import subprocess

import pytest

from align.dpo.__main__ import main as dpo_main
from align.sft.__main__ import main as sft_main
from align.training.cli import debug_requested, error_line, run_stage
from align.dpo.config import KlearDPOConfig
from align.sft.config import KlearSFTConfig
from tests.distributed import REPO_ROOT, env, launch_command

MESSAGE = "error: expert_bias_update must be 'frozen' or 'aux_free', got 'sometimes'"
HINT = "(run with --debug or KLEAR_DEBUG=1 for the traceback)"


def bad_args(stage, tmp_path):
    return ["--config", f"configs/{stage}/tiny.yaml", "--output_dir", str(tmp_path / "out"),
            "--expert_bias_update", "sometimes"]


def test_a_bad_value_ends_the_stage_with_one_line_and_status_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.delenv("KLEAR_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        run_stage("align.sft", sft_main, KlearSFTConfig, bad_args("sft", tmp_path))
    assert exit_.value.code == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"align.sft: {MESSAGE} {HINT}"]
    assert "Traceback" not in captured.out
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_lets_the_exception_through(tmp_path, monkeypatch, how):
    monkeypatch.chdir(REPO_ROOT)
    argv = bad_args("dpo", tmp_path)
    if how == "flag":
        argv.append("--debug")
    else:
        monkeypatch.setenv("KLEAR_DEBUG", "1")
    with pytest.raises(ValueError, match="expert_bias_update must be"):
        run_stage("align.dpo", dpo_main, KlearDPOConfig, argv)


@pytest.mark.slow
def test_two_process_launch_prints_one_line_per_rank_and_fails(tmp_path):
    """The ranks print one line each and no traceback; what follows is accelerate's own report that
    the ranks failed (torch elastic's ChildFailedError), which align cannot change."""
    done = subprocess.run(launch_command(["-m", "align.dpo"], bad_args("dpo", tmp_path)), cwd=REPO_ROOT,
                          env={**env(), "KLEAR_DEBUG": ""}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    output = done.stdout + done.stderr
    ours = sorted(line for line in output.splitlines() if MESSAGE in line)
    assert ours == [f"align.dpo [rank {r}]: {MESSAGE} {HINT}" for r in (0, 1)]
    assert "ValueError" not in output and "align/training/config.py" not in output  # no rank's traceback
    assert not (tmp_path / "out").exists()


def test_debug_flag_is_ours_only_when_it_stands_alone():
    assert debug_requested(["--debug", "--max_steps", "3"])[0]
    assert debug_requested(["--max_steps", "3", "--debug"]) == (True, ["--max_steps", "3"])
    # TrainingArguments' own `--debug underflow_overflow` is left to it
    assert debug_requested(["--debug", "underflow_overflow"]) == (False, ["--debug", "underflow_overflow"])


def test_error_line_is_one_line_and_names_the_rank(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    line = error_line("align.sft", ValueError("bad value\n  in two lines"))
    assert line == f"align.sft [rank 1]: error: bad value in two lines {HINT}"


def test_the_closing_line_never_says_loss_none():
    from align.training.run import loss_phrase

    assert loss_phrase([{"loss": 5.70459, "step": 5}, {"loss": 1.74497, "step": 10}], 5) == "loss 5.7046 -> 1.7450"
    # 3 steps with logging_steps 5: no step logged, the Trainer's mean over the run is reported
    assert loss_phrase([{"train_loss": "3.497", "train_runtime": 7.4}], 5) == (
        "mean loss 3.4970 (no step logged: logging_steps is 5)"
    )
    assert loss_phrase([], 5) == "no loss logged"


@pytest.mark.parametrize("override, message", [
    ("per_device_train_batch_size: [8]", "per_device_train_batch_size must be a whole number; got [8]"),
    ("max_length: {a: 1}", "max_length must be a whole number; got {'a': 1}"),
    ("max_length: 12.5", "max_length must be a whole number; got 12.5"),
    ("max_steps: 2.5", "max_steps must be a whole number; got 2.5"),
    ("per_device_train_batch_size: true", "per_device_train_batch_size must be a whole number; got True"),
    ("beta: [0.1]", "beta must be a number; got [0.1]"),
    ("learning_rate: [1]", "learning_rate must be a number; got [1]"),
    ("max_steps: [5\n", "not valid YAML"),
])
def test_a_value_of_the_wrong_kind_or_bad_yaml_is_one_line(override, message, tmp_path, monkeypatch, capsys):
    """Issue #18 items 1, 2 and 10: what YAML hands through as a list, mapping, boolean or fraction where
    a number belongs, and a YAML syntax error, end in one line naming the field (or file and line)."""
    stage = "dpo" if override.startswith("beta") else "sft"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((REPO_ROOT / f"configs/{stage}/tiny.yaml").read_text() + override + "\n")
    monkeypatch.delenv("KLEAR_DEBUG", raising=False)
    main, config = (dpo_main, KlearDPOConfig) if stage == "dpo" else (sft_main, KlearSFTConfig)
    with pytest.raises(SystemExit) as exit_:
        run_stage(f"align.{stage}", main, config, ["--config", str(recipe), "--output_dir", str(tmp_path / "out")])
    assert exit_.value.code == 1
    line, = capsys.readouterr().err.splitlines()
    assert message in line
    if "YAML" in message:
        assert f"{recipe}:" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--learning_rat", "0.1"], "not used by the HfArgumentParser: ['--learning_rat', '0.1']"),  # no abbreviations
    (["--learning_rate", "fast"], "invalid float value: 'fast'"),
])
def test_flags_by_full_name_and_a_bad_flag_value_is_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.delenv("KLEAR_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        run_stage("align.sft", sft_main, KlearSFTConfig,
                  ["--config", "configs/sft/tiny.yaml", "--output_dir", str(tmp_path / "out"), *argv])
    assert exit_.value.code == 1
    captured = capsys.readouterr()
    line, = captured.err.splitlines()
    assert message in line and "usage:" not in captured.err + captured.out
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_bad_data_row_under_two_processes_is_one_line_per_rank(tmp_path, tiny_klear_dir):
    """Issue #18 item 3: rank 0 reads the data and printed the line; rank 1, waiting for it at a barrier,
    died with gloo's "Connection closed by peer" traceback. One launch, stopped before the model loads."""
    rows = tmp_path / "dpo.jsonl"
    rows.write_text('{"prompt": "2+2?", "chosen": "4", "rejected": "5"}\n{"prompt": "3+3?", "chosen": 6}\n')
    done = subprocess.run(
        launch_command(["-m", "align.dpo"], ["--config", "configs/dpo/tiny.yaml", "--model_name_or_path", str(tiny_klear_dir),
                                             "--dataset_name", str(rows),
                                             "--output_dir", str(tmp_path / "out")]),
        cwd=REPO_ROOT, env={**env(), "KLEAR_DEBUG": ""}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    output = done.stdout + done.stderr
    ours = sorted(line for line in output.splitlines() if ": error: " in line)
    assert [line.split(":")[0] for line in ours] == [f"align.dpo [rank {r}]" for r in (0, 1)], output[-3000:]
    assert f"{rows}:2" in ours[0] and ours[0].split("]", 1)[1] == ours[1].split("]", 1)[1]
    # what follows the lines is accelerate's own report that the ranks failed, as in the test above
    assert "Connection closed by peer" not in output and "align/training/" not in output  # no rank's traceback
    assert not (tmp_path / "out").exists()
