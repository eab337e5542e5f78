"""Run judge tasks concurrently and turn each call into a result row.

Row schema (one JSONL row per judgment; `repeat` numbers the n repeated judgments of an item):
    benchmark, question_id, turn, category, subcategory, model, baseline, game, repeat,
    judge_model, judge_prompt, prompt_hash, request_hash, judgment (raw text),
    score (float | null), ratings ({dimension: score} | null, AlignBench), verdict
    ("model" | "baseline" | "tie" | null, pairwise), missing_dimensions, error (str | null),
    failed_attempts ([{judgment, error, finish_reason}]), attempts, cached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from .client import JudgeAPIError, JudgeClient
from .parsing import JudgmentParseError, parse_alignbench_rating, parse_mt_bench_rating, parse_pair_verdict
from .tasks import ALIGNBENCH, MT_BENCH, MT_BENCH_PAIR, JudgeTask

logger = logging.getLogger("align.judging")


def parse_into_row(task: JudgeTask, judgment: str) -> dict:
    """The parsed fields of a row; raises JudgmentParseError."""
    if task.benchmark == MT_BENCH:
        return {"score": parse_mt_bench_rating(judgment)}
    if task.benchmark == MT_BENCH_PAIR:
        verdict = parse_pair_verdict(judgment)
        model_is_a = task.game == 1
        mapping = {"A": "model" if model_is_a else "baseline", "B": "baseline" if model_is_a else "model"}
        return {"verdict": mapping.get(verdict, "tie")}
    if task.benchmark == ALIGNBENCH:
        rating = parse_alignbench_rating(judgment, task.dimensions)
        return {
            "score": rating.overall,
            "ratings": rating.dimensions,
            "missing_dimensions": list(rating.missing_dimensions),
        }
    raise ValueError(f"unknown benchmark {task.benchmark!r}")


def base_row(task: JudgeTask, judge_model: str, repeat: int) -> dict:
    return {
        "benchmark": task.benchmark,
        "question_id": task.question_id,
        "turn": task.turn,
        "category": task.category,
        "subcategory": task.subcategory,
        "model": task.model,
        "baseline": task.baseline,
        "game": task.game,
        "repeat": repeat,
        "judge_model": judge_model,
        "judge_prompt": task.judge_prompt,
        "prompt_hash": task.prompt_hash,
        "request_hash": None,
        "judgment": None,
        "score": None,
        "ratings": None,
        "verdict": None,
        "missing_dimensions": [],
        "error": None,
        "failed_attempts": [],
        "attempts": 0,
        "cached": True,
    }


def judge_task(client: JudgeClient, task: JudgeTask, repeat: int, parse_retries: int) -> dict:
    """One scored judgment: up to 1 + parse_retries calls until one parses. Never raises for bad output."""
    row = base_row(task, client.config.model, repeat)
    for attempt in range(parse_retries + 1):
        try:
            result = client.complete(task.messages, max_tokens=task.max_tokens, sample=[repeat, attempt])
        except JudgeAPIError as err:
            row.update(error=f"api: {err}", attempts=attempt + 1, cached=False)
            return row
        row.update(request_hash=result.key, attempts=attempt + 1, cached=row["cached"] and result.cached)
        try:
            parsed = parse_into_row(task, result.content)
        except JudgmentParseError as err:
            row["failed_attempts"].append(
                {"judgment": result.content, "error": str(err), "finish_reason": result.finish_reason}
            )
            continue
        row.update(judgment=result.content, **parsed)
        return row
    last = row["failed_attempts"][-1]
    row.update(judgment=last["judgment"], error=f"unparseable after {parse_retries + 1} attempt(s): {last['error']}")
    return row


def run_tasks(
    client: JudgeClient,
    tasks: Iterable[JudgeTask],
    *,
    on_row: Callable[[dict], None],
    progress_every_s: float = 10.0,
) -> list[dict]:
    """Judge every task `repeats` times with `concurrency` calls in flight; `on_row` sees each row
    as it completes (in the calling thread, so writers need no lock)."""
    config = client.config
    units = [(task, repeat) for task in tasks for repeat in range(config.repeats)]
    rows: list[dict] = []
    last_report = time.monotonic()
    with ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="judge") as pool:
        pending = {pool.submit(judge_task, client, task, repeat, config.parse_retries) for task, repeat in units}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    row = future.result()
                    rows.append(row)
                    on_row(row)
                if time.monotonic() - last_report >= progress_every_s:
                    last_report = time.monotonic()
                    failed = sum(1 for row in rows if row["error"])
                    logger.info("judged %d/%d (%d failed) %s", len(rows), len(units), failed, dict(client.stats))
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return rows
