"""bench/gpu/run.sh --cpu-smoke: the GPU check's own code at toy sizes on CPU, so that it cannot rot
between the sessions that have a GPU. One run (module fixture) serves every assertion."""

import json
import math
import subprocess

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu-check")
    done = subprocess.run(["bash", "bench/gpu/run.sh", "--cpu-smoke", str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def test_every_section_ran(results):
    for section in ("environment", "bf16_recipes", "klear_slice", "dpo_vs_trl", "vllm_serving", "rl_vllm"):
        assert results[section]["ok"], results[section].get("traceback", results[section])
    assert results["rl_vllm"]["skipped"].startswith("CPU smoke: both modes run on vLLM's CPU build")
    assert results["mode"] == "cpu-smoke"
    assert results["environment"]["differs_from_pins"] == []  # CI's venv holds the pins


def test_bf16_recipes_trained(results):
    for stage in ("sft", "dpo"):
        run = results["bf16_recipes"][stage]
        assert run["steps"] == 2 and len(run["losses"]) == 2
        assert all(math.isfinite(loss) for loss in run["losses"])
        assert run["tokens"] > 0 and run["tokens_per_s"] > 0
    assert results["bf16_recipes"]["dtype"] == "bfloat16"
    rl = results["bf16_recipes"]["rl"]  # the short GPPO run
    assert rl["steps"] == 2 and all(math.isfinite(loss) for loss in rl["losses"])
    assert results["bf16_recipes"]["dpo"]["first_loss"] == pytest.approx(math.log(2), abs=0.05)  # policy == reference


def test_klear_slice_backends_agree(results):
    """Both experts backends run the same weights on the same tokens: the same loss (bf16 rounding)."""
    section = results["klear_slice"]
    grouped, batched = section["backends"]["grouped_mm"], section["backends"]["batched_mm"]
    assert grouped["ok"] and batched["ok"]
    assert grouped["loss"] == pytest.approx(batched["loss"], rel=2e-2)
    for timing in (grouped, batched):
        assert timing["tokens_per_s"] > 0 and timing["achieved_tflops"] > 0
        assert timing["mfu_vs_989"] == pytest.approx(timing["achieved_tflops"] / 989.0)
    assert grouped["flops_per_token"] > 6 * section["parameters"] / 10  # active share of a toy Klear: not zero


def test_dpo_vs_trl_compares_the_same_computation(results):
    section = results["dpo_vs_trl"]
    assert section["trl"]["first_loss"] == pytest.approx(section["align"]["first_loss"], abs=1e-3)
    assert section["throughput_ratio"] > 0 and section["memory_ratio"] > 0


def test_a_failing_section_is_recorded_and_the_next_still_runs(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", REPO_ROOT / "bench/gpu/check.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)

    def broken():
        raise RuntimeError("CUDA error: no kernel image is available")

    results = {}
    check.run_section(results, "klear_slice", tmp_path, broken)
    check.run_section(results, "dpo_vs_trl", tmp_path, lambda: {"throughput_ratio": 2.0})
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["klear_slice"]["ok"] is False
    assert "RuntimeError: CUDA error: no kernel image" in written["klear_slice"]["error"]
    assert "broken" in written["klear_slice"]["traceback"]
    assert written["dpo_vs_trl"] == {"ok": True, "throughput_ratio": 2.0, "seconds": written["dpo_vs_trl"]["seconds"]}
