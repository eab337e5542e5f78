"""`accelerate launch -m align.rl` with 2 CPU processes, ZeRO-3 and expert parallel size 2 (one launch): GPPO
with the router aux loss turned on (it must work, not crash), metrics in TensorBoard, rollouts on disk, and a
saved model in the official layout that loads and answers."""

import json

import pytest
from safetensors import safe_open
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoTokenizer

import align  # noqa: F401
from align.data.demo import write_demo_data
from tests.distributed import run_2proc
from tests.rl.saved_model import assert_loads_and_answers

pytestmark = pytest.mark.slow
STEPS = 4


@pytest.fixture(scope="module")
def rl_run(tmp_path_factory, tiny_klear_dir):
    root = tmp_path_factory.mktemp("rl")
    data = write_demo_data(root / "data", n_train=64, n_eval=4)
    out = root / "out"
    run_2proc(
        ["-m", "align.rl"],
        ["--config", "configs/rl/tiny.yaml", "--model_name_or_path", str(tiny_klear_dir),
         "--dataset_name", str(data["rl"]), "--output_dir", str(out), "--max_steps", str(STEPS),
         "--router_aux_loss_coef", "0.001",
         # the untrained model never names the answer; a second reward gives its groups variance to train on
         "--reward_funcs", "align.rl.demo.mentions_answer", "tests.rl.learning_task.even_length",
         "--reward_weights", "1.0", "1.0"],
        log=root / "launch.log",
    )
    return out


def test_training_summary_counts_the_rollouts_and_groups(rl_run):
    summary = json.loads((rl_run / "training_summary.json").read_text())
    assert summary["global_steps"] == STEPS and summary["world_size"] == 2
    rl = summary["rl"]
    # generation batch: 8 per rank x 2 ranks x steps_per_generation 2 = 32 rollouts, every 2 steps
    assert rl["rollouts"] == STEPS // 2 * 32 and rl["groups"] == rl["rollouts"] // 4
    assert rl["zero_variance_policy"] == "dropped from the loss"
    assert [r["experts_held"] for r in summary["expert_parallel_layout"]] == [4, 4]
    rows = [json.loads(line) for p in sorted((rl_run / "rollouts").glob("*.jsonl")) for line in p.read_text().splitlines()]
    assert len(rows) == rl["rollouts"] and all({"mentions_answer", "even_length"} <= set(r["rewards"]) for r in rows)
    assert summary["data"]["kept"] == 64 and "prompt_tokens" in summary["data"]


def test_train_tokens_are_the_kept_rollouts_prompt_and_completion_tokens(rl_run):
    summary = json.loads((rl_run / "training_summary.json").read_text())
    rows = [json.loads(line) for p in sorted((rl_run / "rollouts").glob("*.jsonl")) for line in p.read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(rl_run)
    for row in rows:  # each recorded count against the tokenizer's own rendering of the prompt
        rendered = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"]
        assert row["prompt_tokens"] == len(rendered)
        assert 1 <= row["completion_tokens"] <= 16  # max_completion_length in configs/rl/tiny.yaml
    kept = [r for r in rows if not r["zero_variance_group"]]
    assert kept, "every group had zero variance: nothing was trained on"
    assert summary["train_tokens"] == sum(r["prompt_tokens"] + r["completion_tokens"] for r in kept)


def test_rl_metrics_and_the_aux_loss_reach_tensorboard(rl_run):
    logs = sorted(rl_run.rglob("events.out.tfevents.*"))
    assert logs, "no TensorBoard events written"
    events = EventAccumulator(str(logs[0].parent))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("train/reward", "train/rewards/accuracy", "train/rewards/zero_variance_groups",
                "train/clip_ratio/low_mean", "train/clip_ratio/high_mean", "train/entropy", "train/aux_loss",
                "train/moe/max_load_share"):
        assert tag in tags, (tag, sorted(tags))


def test_the_saved_model_loads_and_answers(rl_run):
    with safe_open(str(rl_run / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "model.layers.0.mlp.experts.7.down_proj.weight" in keys  # gathered from both ranks, official names
    assert_loads_and_answers(rl_run)
