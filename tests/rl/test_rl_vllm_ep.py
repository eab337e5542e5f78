"""GPPO with rollouts from colocated vLLM engines under `accelerate launch` with 2 CPU processes, ZeRO-3 and expert
parallel size 2 (one launch): each rank's engine generates its rollouts and, before each generation batch, gets the
whole policy (`align.rl.vllm_sync.policy_weights`: each expert gathered from its owner rank under Klear's
names; `reload_weights` refuses a sync that leaves any engine parameter unloaded). A tiny Klear with head_dim 64
(vLLM's CPU attention has no kernel for the tiny factory's 16), fp32."""

import json

import pytest

from align.data.demo import write_demo_data
from align.models.klear.tiny import build_tiny_klear
from tests.distributed import run_2proc
from tests.markers import needs_vllm
from tests.rl.saved_model import assert_loads_and_answers, logp_gaps

pytestmark = [
    pytest.mark.slow,
    needs_vllm,
]
STEPS = 2


@pytest.fixture(scope="module")
def ep_vllm_run(tmp_path_factory, monkeypatch_module):
    root = tmp_path_factory.mktemp("rl-vllm-ep")
    model = build_tiny_klear(root / "tiny-hd64", seed=0, head_dim=64)
    data = write_demo_data(root / "data", n_train=32, n_eval=4)
    out = root / "out"
    monkeypatch_module.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # each engine's KV cache in GiB (see the colocate test)
    run_2proc(
        ["-m", "align.rl"],
        ["--config", "configs/rl/tiny.yaml", "--model_name_or_path", str(model), "--dataset_name", str(data["rl"]),
         "--output_dir", str(out), "--max_steps", str(STEPS), "--steps_per_generation", "1",
         "--per_device_train_batch_size", "4", "--use_vllm", "true", "--vllm_mode", "colocate",
         "--vllm_gpu_memory_utilization", "0.1", "--vllm_enforce_eager", "true", "--bf16", "false", "--dtype", "float32", "--report_to", "none",
         # random-text completions differ in length parity: groups with variance, so the weights move
         "--reward_funcs", "tests.rl.learning_task.even_length"],
        log=root / "launch.log",
    )
    return out, (root / "launch.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_each_rank_generates_with_vllm_and_gets_every_expert(ep_vllm_run):
    out, log = ep_vllm_run
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["global_steps"] == STEPS and summary["world_size"] == 2
    assert [r["experts_held"] for r in summary["expert_parallel_layout"]] == [4, 4]  # AutoEP really split them
    # generation batch: 4 per rank x 2 ranks x steps_per_generation 1 = 8 rollouts, every step
    assert summary["rl"]["rollouts"] == STEPS * 8
    # TRL logs the sampler's log-probabilities against the trainer's only for vLLM rollouts; the second batch comes
    # after one optimiser step, and agrees only if both engines got the updated experts
    gaps = logp_gaps(log)
    assert len(gaps) == STEPS, log[-3000:]
    assert max(gaps) < 1e-4, gaps  # fp32 on both sides; 0.44 with the sync switched off, by hand


def test_the_saved_model_loads_and_answers(ep_vllm_run):
    out, _ = ep_vllm_run
    assert_loads_and_answers(out)
