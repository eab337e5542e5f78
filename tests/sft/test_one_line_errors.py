"""A recipe or data error ends a stage with one line per failing rank and exit status 1; `--debug` or
KLEAR_DEBUG=1 brings the traceback back."""

import subprocess
import sys

import pytest

from align.training.cli import debug_requested, error_line
from tests.distributed import REPO_ROOT, env, launch_command

BAD_VALUE = ["--expert_bias_update", "sometimes"]
MESSAGE = "error: expert_bias_update must be 'frozen' or 'aux_free', got 'sometimes'"


def run(command, tmp_path, **extra_env):
    return subprocess.run(command, cwd=REPO_ROOT, env={**env(), **extra_env}, capture_output=True, text=True,
                          timeout=300)


def stage_args(stage, tmp_path):
    return ["--config", f"configs/{stage}/tiny.yaml", "--output_dir", str(tmp_path / "out"), *BAD_VALUE]


def test_one_process_run_ends_with_one_line_and_status_1(tmp_path):
    done = run([sys.executable, "-m", "align.sft", *stage_args("sft", tmp_path)], tmp_path)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert errors == [f"align.sft: {MESSAGE} (run with --debug or KLEAR_DEBUG=1 for the traceback)"]
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(tmp_path, how):
    args = stage_args("dpo", tmp_path) + (["--debug"] if how == "flag" else [])
    done = run([sys.executable, "-m", "align.dpo", *args], tmp_path, **({"KLEAR_DEBUG": "1"} if how == "env" else {}))
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "ValueError: expert_bias_update must be" in done.stderr


@pytest.mark.slow
def test_two_process_launch_prints_one_line_per_rank(tmp_path):
    done = run(launch_command(["-m", "align.dpo"], stage_args("dpo", tmp_path)), tmp_path)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    ours = sorted(line for line in output.splitlines() if MESSAGE in line)
    assert [line.split(":")[0] for line in ours] == ["align.dpo [rank 0]", "align.dpo [rank 1]"]
    # no rank printed a Python traceback (the launcher's own report of failed ranks may follow)
    assert "ValueError" not in output.replace(MESSAGE, "")


def test_debug_flag_is_ours_only_when_it_stands_alone():
    assert debug_requested(["--debug", "--max_steps", "3"])[0]
    assert debug_requested(["--max_steps", "3", "--debug"]) == (True, ["--max_steps", "3"])
    # TrainingArguments' own `--debug underflow_overflow` is left to it
    assert debug_requested(["--debug", "underflow_overflow"]) == (False, ["--debug", "underflow_overflow"])


def test_error_line_is_one_line_and_names_the_rank(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    line = error_line("align.sft", ValueError("bad value\n  in two lines"))
    assert line.startswith("align.sft [rank 1]: error: bad value in two lines") and "\n" not in line
