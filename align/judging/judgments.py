"""Judge a set of answers end to end: what to judge (JudgeRequest) -> judge tasks -> judge calls
(concurrent, cached) -> one row per judgment -> the run's files -> summary and report.

Row schema (one JSONL row per judgment; `repeat` numbers the n repeated judgments of an item):
    benchmark, question_id, turn, category, subcategory, model, baseline, game, repeat,
    judge_model, judge_prompt, prompt_hash, request_hash, judgment (raw text),
    score (float | null), ratings ({dimension: score} | null, AlignBench), verdict
    ("model" | "baseline" | "tie" | null, pairwise; "baseline" is the opponent), pairing ("baseline" |
    "all" | null), missing_dimensions, odd_dimensions ({dimension: out-of-range score}, AlignBench),
    error (str | null), failed_attempts ([{judgment, error, finish_reason}]), attempts, cached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from align.data.benchmarks import (
    answer_files,
    check_complete,
    load_alignbench,
    load_alignbench_answers,
    load_fastchat_answers,
    load_mt_bench,
)
from .client import JudgeAPIError, JudgeCache, JudgeClient, JudgeEndpointError
from .config import JudgeConfig
from .parsing import JudgmentParseError, parse_alignbench_rating, parse_mt_bench_rating, parse_pair_verdict
from .prompts import short_hash
from .report import write_report
from .runs import RowWriter, finish_run, start_run
from .tasks import (
    ALIGNBENCH,
    MT_BENCH,
    MT_BENCH_PAIR,
    JudgeTask,
    alignbench_tasks,
    mt_bench_pair_tasks,
    mt_bench_single_tasks,
    select_questions,
)

logger = logging.getLogger("align.judging")
MODES = ("single", "pairwise", "pairwise-all", "both")


@dataclass(frozen=True)
class JudgeRequest:
    """What to judge. Answer paths are a FastChat/THUDM answer file or a directory of them (one per model)."""

    mt_bench_answers: str | Path | None = None
    alignbench_answers: str | Path | None = None
    mode: str = "single"  # MT-Bench: single grading, pairwise against `baseline`, pairwise-all, or both
    baseline: str = "gpt-3.5-turbo"
    models: tuple[str, ...] | None = None  # judge only these models (the baseline is always loaded)
    questions_per_category: int | None = None  # a labelled subset, for demos and smoke tests
    question_ids: tuple[int, ...] | None = None  # likewise (applied to each benchmark given)
    alignbench_dir: str | Path | None = None
    note: str | None = None
    warning: str | None = None  # shown at the top of the report (e.g. "these scores mean nothing")
    training_data: dict | None = None  # the judged model's data card facts (decontamination), for the report

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mt_bench_answers is None and self.alignbench_answers is None:
            raise ValueError("nothing to judge: give MT-Bench and/or AlignBench answers")


def _selected(files: dict[str, Path], models: tuple[str, ...] | None, keep: str | None = None) -> dict[str, Path]:
    if models is None:
        return files
    unknown = sorted(set(models) - set(files))
    if unknown:
        raise ValueError(f"no answer file for model(s) {unknown}; have {sorted(files)}")
    return {m: f for m, f in files.items() if m in models or m == keep}


def build_tasks(request: JudgeRequest, judge: JudgeConfig) -> tuple[list[JudgeTask], dict]:
    """(tasks, provenance recorded in run.json)."""
    tasks: list[JudgeTask] = []
    provenance: dict = {"answers": {}}
    if request.mt_bench_answers is not None:
        bench = load_mt_bench()
        questions = select_questions(bench.questions, request.questions_per_category, request.question_ids)
        keep = request.baseline if request.mode in ("pairwise", "both") else None
        files = _selected(answer_files(request.mt_bench_answers), request.models, keep)
        answers = {model: load_fastchat_answers(path) for model, path in files.items()}
        for model, path in files.items():
            check_complete(answers[model], [q["question_id"] for q in questions], path)
        if request.mode in ("single", "both"):
            graded = {m: a for m, a in answers.items() if request.models is None or m in request.models}
            tasks += mt_bench_single_tasks(bench, questions, graded, max_tokens=judge.max_tokens)
        if request.mode in ("pairwise", "both"):
            tasks += mt_bench_pair_tasks(bench, questions, answers, request.baseline, max_tokens=judge.max_tokens)
        if request.mode == "pairwise-all":
            tasks += mt_bench_pair_tasks(bench, questions, answers, None, max_tokens=judge.max_tokens)
        provenance["answers"]["mt_bench"] = {model: str(path) for model, path in files.items()}
    if request.alignbench_answers is not None:
        bench = load_alignbench(request.alignbench_dir)
        questions = select_questions(bench.questions, request.questions_per_category, request.question_ids)
        files = _selected(answer_files(request.alignbench_answers), request.models)
        answers = {model: load_alignbench_answers(path) for model, path in files.items()}
        for model, path in files.items():
            check_complete(answers[model], [q["question_id"] for q in questions], path)
        tasks += alignbench_tasks(bench, questions, answers, max_tokens=judge.max_tokens)
        provenance["answers"]["alignbench"] = {model: str(path) for model, path in files.items()}
    return tasks, provenance


def run_fingerprint(tasks: list[JudgeTask], judge: JudgeConfig) -> str:
    """Same fingerprint = same calls: an interrupted run with it is resumed rather than restarted."""
    return short_hash(
        {
            "judge": [judge.model, judge.repeats, judge.parse_retries],
            "tasks": sorted([list(map(str, t.item_key)), t.max_tokens, short_hash(t.messages)] for t in tasks),
        }
    )


# ----- judge calls -> rows -----


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
            "odd_dimensions": rating.odd_dimensions,
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
        "pairing": task.pairing,
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
        "odd_dimensions": {},
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
        except JudgeEndpointError:
            raise  # the whole run stops: every other item would fail the same way
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


# ----- the whole run -----


def judge_answers(
    out_dir: str | Path, request: JudgeRequest, judge: JudgeConfig, *, cache_dir: str | Path | None = None
) -> Path:
    """Judge, write DIR/runs/<id>/judgments.jsonl and rebuild DIR's report; returns report.md."""
    out_dir = Path(out_dir)
    tasks, provenance = build_tasks(request, judge)
    subset = {
        key: value
        for key, value in (("questions_per_category", request.questions_per_category),
                           ("question_ids", list(request.question_ids or []) or None))
        if value
    } or None
    meta = {
        "fingerprint": run_fingerprint(tasks, judge),
        "judge": judge.public(),
        "mode": request.mode,
        "subset": subset,
        "note": request.note,
        "warning": request.warning,
        "training_data": request.training_data,
        "counts": {"judge_tasks": len(tasks), "repeats": judge.repeats},
        **provenance,
    }
    client = JudgeClient(judge, JudgeCache(cache_dir or out_dir / "cache"))
    logger.info("judge endpoint: %s", client.preflight())  # a dead endpoint stops here, before any run
    run, resumed = start_run(out_dir, meta)
    logger.info("%s run %s: %d judge tasks x %d repeat(s) with %s at %s", "resuming" if resumed else "starting",
                run.run_id, len(tasks), judge.repeats, judge.model, judge.base_url)
    writer = RowWriter(run)
    try:
        rows = run_tasks(client, tasks, on_row=writer)
    finally:
        writer.close()
    finish_run(run, rows, dict(client.stats))
    failed = sum(1 for row in rows if row["error"])
    logger.info("run %s finished: %d judgments, %d failed; calls %s", run.run_id, len(rows), failed, dict(client.stats))
    return write_report(out_dir)
