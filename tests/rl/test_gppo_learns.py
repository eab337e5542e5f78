"""What the RL stage must show in one process: a tiny Klear taught by SFT to give an answer only sometimes
learns, by GPPO with a reward it has never seen (named by dotted path), to give it on held-out prompts."""

import json

import pytest
import torch
from trl import ModelConfig, ScriptArguments, TrlParser

from align.common.files import write_jsonl
from align.rl.__main__ import main as rl_main
from align.rl.config import KlearGRPOConfig
from align.sft.__main__ import main as sft_main
from align.sft.config import KlearSFTConfig
from tests.distributed import REPO_ROOT
from tests.rl import learning_task as task

pytestmark = pytest.mark.slow


def greedy_answers(model_dir, nouns) -> list[str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    answers = []
    for noun in nouns:
        ids = tokenizer.apply_chat_template(task.prompt(noun), add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]
        out = model.generate(ids, max_new_tokens=4, do_sample=False)
        answers.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return answers


def rare_count(answers) -> int:
    return sum(a.lower().startswith(task.RARE) for a in answers)


@pytest.fixture(scope="module")
def sft_model(tmp_path_factory, tiny_klear_dir):
    """The tiny Klear after SFT on data where the rare answer is a quarter of the rows."""
    root = tmp_path_factory.mktemp("rl-learn")
    data = root / "sft.jsonl"
    write_jsonl(data, task.sft_rows(128, rare_share=0.25))
    argv = ["--config", str(REPO_ROOT / "configs/sft/tiny.yaml"), "--model_name_or_path", str(tiny_klear_dir),
            "--dataset_name", str(data), "--output_dir", str(root / "sft"), "--max_steps", "30",
            "--report_to", "none", "--save_strategy", "no", "--bf16", "false", "--dtype", "float32"]
    sft_main(*TrlParser((ScriptArguments, KlearSFTConfig, ModelConfig)).parse_args_and_config(argv))
    return root


def test_gppo_teaches_the_rewarded_answer(sft_model, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    before = greedy_answers(sft_model / "sft", task.HELD_OUT)
    assert rare_count(before) <= 2, before  # SFT taught both answers; greedy gives the common one

    data = sft_model / "prompts.jsonl"
    write_jsonl(data, task.prompt_rows())
    out = sft_model / "rl"
    argv = ["--config", "configs/rl/tiny.yaml", "--model_name_or_path", str(sft_model / "sft"),
            "--dataset_name", str(data), "--output_dir", str(out), "--reward_funcs", "tests.rl.learning_task.pays_rare",
            "--max_steps", "40", "--max_completion_length", "4", "--report_to", "none",
            "--bf16", "false", "--dtype", "float32"]
    trainer = rl_main(*TrlParser((ScriptArguments, KlearGRPOConfig, ModelConfig)).parse_args_and_config(argv))

    after = greedy_answers(out, task.HELD_OUT)
    print(f"held-out greedy answers: before {before}, after {after}")
    assert rare_count(after) >= 9, after

    summary = json.loads((out / "training_summary.json").read_text())
    rl = summary["rl"]
    assert rl["rollouts"] == 40 // 2 * 16  # a generation batch of 16 rollouts (8 x steps_per_generation 2) per 2 steps
    assert rl["groups"] == rl["rollouts"] // 4 and 0 <= rl["zero_variance_groups"] <= rl["groups"]
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert all(k in logged[0] for k in ("rewards/accuracy", "rewards/zero_variance_groups", "clip_ratio/low_mean",
                                        "clip_ratio/high_mean", "entropy"))
    # every rollout is on disk with its reward
    batches = sorted((out / "rollouts").glob("batch_*.jsonl"))
    rows = [json.loads(line) for path in batches for line in path.read_text().splitlines()]
    assert len(rows) == rl["rollouts"]
    assert {"prompt", "completion", "rewards", "total_reward", "correct", "zero_variance_group"} <= set(rows[0])
    assert sum(r["correct"] for r in rows) == rl["correct_rollouts"]
