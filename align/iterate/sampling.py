"""Sampling a round's answers from the current policy with the judge's answer engines
(align.judging.answers: vLLM where installed and able to run the model, transformers otherwise).

One engine per round: built on the policy the previous round saved, used for every prompt of the
round at once, and closed before DPO starts, so that training gets the memory (on GPUs: all of it).
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

from align.judging.answers import generate_answers, local_backend

logger = logging.getLogger("align.iterate")


def close_backend(backend) -> None:
    """Free an engine's memory now: vLLM's `close` stops its engine; a transformers model is dropped."""
    close = getattr(backend, "close", None)
    if close is not None:
        close()
    else:
        backend.model = None
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sample_round(policy_dir: str | Path, prompts: list[dict], args, round_number: int) -> tuple[list[dict], dict]:
    """(one row per prompt with its `samples`, sampling stats). Sample k of a prompt is seeded with
    `args.seed + round_number` (repeatable with the local engines)."""
    started = time.time()
    backend = local_backend(policy_dir, engine=args.sampling_engine, batch_size=args.sampling_batch_size)
    try:
        answers = generate_answers([row["prompt"] for row in prompts], backend,
                                   temperature=args.sampling_temperature,
                                   max_new_tokens=args.sampling_max_new_tokens,
                                   n=args.samples_per_prompt, seed=args.seed + round_number)
        stats = {**backend.stats, "engine": getattr(backend, "engine", type(backend).__name__)}
    finally:
        close_backend(backend)
    rows = [{**row, "samples": [{"text": text} for text in texts]} for row, texts in zip(prompts, answers)]
    stats["seconds"] = round(time.time() - started, 3)
    return rows, stats
