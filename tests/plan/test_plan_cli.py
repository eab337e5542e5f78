"""align.plan's command line: values no machine has, and missing or broken files, refused in one line."""

import pytest

from align.plan.__main__ import main as plan_cli


RECIPE = "configs/sft/klear-46b-a2.5b.yaml"


@pytest.mark.parametrize("flags, line", [
    (["--gpus", "0"], "align.plan: --gpus must be at least 1, got 0"),
    (["--nodes", "-1"], "align.plan: --nodes must be at least 1, got -1"),
    (["--gpu-memory-gib", "-5"], "align.plan: --gpu-memory-gib must be more than 0, got -5"),
    (["--headroom", "1.5"], "align.plan: --headroom must be a fraction from 0 up to, not including, 1, got 1.5"),
    (["--mfu", "0"], "align.plan: --mfu must be a fraction above 0, at most 1, got 0"),
    (["--peak-tflops", "0"], "align.plan: --peak-tflops must be more than 0, got 0"),
    (["--runtime-gib", "-1"], "align.plan: --runtime-gib must be 0 or more, got -1"),
    (["--deepspeed", "configs/deepspeed/nope.json"], "align.plan: --deepspeed configs/deepspeed/nope.json: no such file"),
    (["--per_device_train_batch_size", "-4"], f"align.plan: {RECIPE}: per_device_train_batch_size must be at least 1, got -4"),
    (["--gradient_accumulation_steps", "0"], f"align.plan: {RECIPE}: gradient_accumulation_steps must be at least 1, got 0"),
])
def test_nonsense_flags_are_refused_by_name(flags, line, capsys):
    with pytest.raises(SystemExit) as refused:
        plan_cli(["--config", RECIPE, *([] if "--gpus" in flags else ["--gpus", "16"]), *flags])
    assert str(refused.value.code) == line
    assert capsys.readouterr().out == ""  # nothing planned, nothing printed


def test_a_deepspeed_file_that_is_not_json_is_one_line_with_exit_1(tmp_path):
    import subprocess
    import sys

    broken = tmp_path / "ds.json"
    broken.write_text("{zero_optimization: 3")
    done = subprocess.run([sys.executable, "-m", "align.plan", "--config", RECIPE, "--deepspeed", str(broken)],
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"align.plan: {broken} is not valid JSON (")
