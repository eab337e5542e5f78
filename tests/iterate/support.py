"""What the rounds' tests share: a prompts file, one in-process run of the tiny recipe, greedy answers."""

import json
from pathlib import Path

from trl import ModelConfig, ScriptArguments, TrlParser

from align.iterate.__main__ import main
from align.iterate.config import KlearIterateConfig
from align.judging.answers import TransformersBackend, generate_answers
from tests.conftest import REPO_ROOT


def write_prompts(path: Path, prompts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts), encoding="utf-8")
    return path


def iterate_argv(out: Path, policy: Path, prompts: Path, *extra: str) -> list[str]:
    """The tests' `align.iterate` arguments: the tiny recipe in float32, sampled with transformers unless `extra`
    says otherwise (the last value given wins)."""
    return ["--config", str(REPO_ROOT / "configs/iterate/tiny.yaml"), "--model_name_or_path", str(policy),
            "--prompts_dataset", str(prompts), "--output_dir", str(out), "--bf16", "false", "--dtype", "float32",
            "--sampling_engine", "transformers", *extra]


def run_iterate(out: Path, policy: Path, prompts: Path, *extra: str) -> list[dict]:
    argv = iterate_argv(out, policy, prompts, *extra)
    return main(*TrlParser((ScriptArguments, KlearIterateConfig, ModelConfig)).parse_args_and_config(argv))


def greedy(model_dir: Path, prompts: list[str]) -> list[str]:
    backend = TransformersBackend(model_dir)
    answers = generate_answers([[{"role": "user", "content": p}] for p in prompts], backend,
                               temperature=0.0, max_new_tokens=16)
    return [a[0] for a in answers]
