"""A round that samples with vLLM's offline engine (the CPU build): `sampling_engine: vllm` on a tiny Klear with
head_dim 64 (vLLM's CPU attention has no kernel for the tiny factory's 16). The engine is closed before DPO
starts: every process it started has exited (round-1/phases.json), and the round's DPO then trains. A
subprocess, as `python -m align.iterate` runs: vLLM decorates Klear's class in the process that builds it.
The reward (`tests.rl.learning_task.even_length`) pays a random model's random text half the time, so its
prompts have pairs."""

import json
import os
import subprocess
import sys

import pytest

from align.models.klear.tiny import build_tiny_klear
from tests.conftest import REPO_ROOT, sometimes_prompt
from tests.iterate.support import iterate_argv, write_prompts
from tests.markers import needs_vllm

pytestmark = [
    pytest.mark.slow,
    needs_vllm,
]


def test_a_round_samples_with_vllm_and_closes_it_before_dpo(tmp_path):
    policy = build_tiny_klear(tmp_path / "tiny-hd64", seed=0, head_dim=64)
    prompts = write_prompts(tmp_path / "prompts.jsonl", [sometimes_prompt(n) for n in range(4)])
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "align.iterate",
         *iterate_argv(out, policy, prompts, "--sampling_engine", "vllm", "--rounds", "1", "--prompts_per_round", "4",
                       "--max_steps", "1", "--sampling_max_new_tokens", "16",
                       "--reward_funcs", "tests.rl.learning_task.even_length")],
        cwd=REPO_ROOT, env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    sampled = json.loads((out / "round-1/phases.json").read_text())["sampled"]
    assert sampled["engine"] == "vllm" and sampled["answers"] == 16
    assert sampled["engine_processes"] >= 1 and sampled["engine_processes_left"] == 0  # closed: its processes exited
    closed = log.index(f"engine closed, 0 of its {sampled['engine_processes']} process(es) left")
    assert closed < log.index("training data:")  # closed before DPO read its pairs
    rounds = json.loads((out / "rounds.json").read_text())["rounds"]
    assert rounds[0]["sampling_engine"] == "vllm" and rounds[0]["pairs"] > 0 and rounds[0]["dpo"]["global_steps"] == 1
    assert (out / "round-1/dpo/config.json").is_file()
