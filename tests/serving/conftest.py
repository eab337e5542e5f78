"""The vLLM serving tests' shared fixtures: one SFT-trained tiny Klear (head_dim 64) and transformers'
greedy answers to the demo's eval prompts."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from align.data.demo import write_demo_data
from align.judging.answers import TransformersBackend
from align.models.klear.tiny import build_tiny_klear
from serving_support import MAX_NEW_TOKENS, REPO_ROOT


@pytest.fixture(scope="session")
def sft_klear(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("serving")
    base = build_tiny_klear(root / "tiny-klear-hd64", seed=0, head_dim=64)
    data = write_demo_data(root / "data", n_train=64, n_eval=8)
    out = root / "sft"
    subprocess.run(
        [sys.executable, "-m", "align.sft", "--config", "configs/sft/tiny.yaml", "--model_name_or_path", str(base),
         "--dataset_name", str(data["sft"]), "--output_dir", str(out), "--max_steps", "6", "--report_to", "none",
         "--save_strategy", "no", "--bf16", "false", "--dtype", "float32"],
        cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=600,
    )
    return out, data


@pytest.fixture(scope="session")
def conversations(sft_klear) -> list[list[dict]]:
    """The demo's eval prompts: each eval row's messages before its first assistant turn."""
    rows = [json.loads(line) for line in sft_klear[1]["sft_eval"].read_text().splitlines()]
    prompts = []
    for row in rows:
        first_answer = next(i for i, m in enumerate(row["messages"]) if m["role"] == "assistant")
        prompts.append(row["messages"][:first_answer])
    return prompts


@pytest.fixture(scope="session")
def transformers_answers(sft_klear, conversations) -> list[str]:
    backend = TransformersBackend(sft_klear[0], batch_size=1, device="cpu")  # one at a time: no padding
    return [a[0] for a in backend.generate(conversations, temperature=0.0, max_new_tokens=MAX_NEW_TOKENS, n=1, seed=0)]
