"""Sampling a round's answers from the current policy with the judge's answer engines
(align.judging.answers: vLLM where installed and able to run the model, transformers otherwise).

One engine per round: built on the policy the previous round saved, used for every prompt of the
round at once, and closed before DPO starts, so that training gets the memory (on GPUs: all of it).
The round's sampling stats (round-N/phases.json) say which engine sampled, how many processes it
started (vLLM: its engine core and workers) and how many of them still ran once it was closed.
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


def still_running(processes) -> int:
    """How many of `processes` (psutil.Process) still run: neither exited nor left as a zombie."""
    import psutil

    running = 0
    for process in processes:
        try:
            running += process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:  # exited and reaped
            pass
    return running


def sample_round(policy_dir: str | Path, prompts: list[dict], args, round_number: int) -> tuple[list[dict], dict]:
    """(one row per prompt with its `samples`, sampling stats). Sample k of a prompt is seeded with
    `args.seed + round_number` (repeatable with the local engines)."""
    started = time.time()
    backend = local_backend(policy_dir, engine=args.sampling_engine, batch_size=args.sampling_batch_size)
    engine_processes = set(getattr(backend, "engine_processes", ()))  # vLLM's engine core and workers
    try:
        answers = generate_answers([row["prompt"] for row in prompts], backend,
                                   temperature=args.sampling_temperature,
                                   max_new_tokens=args.sampling_max_new_tokens,
                                   n=args.samples_per_prompt, seed=args.seed + round_number)
        stats = {**backend.stats, "engine": getattr(backend, "engine", type(backend).__name__)}
    finally:
        close_backend(backend)
    stats.update(engine_processes=len(engine_processes), engine_processes_left=still_running(engine_processes))
    rows = [{**row, "samples": [{"text": text} for text in texts]} for row, texts in zip(prompts, answers)]
    stats["seconds"] = round(time.time() - started, 3)
    return rows, stats
