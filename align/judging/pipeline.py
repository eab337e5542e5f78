"""Judge a set of answers end to end: tasks -> judge calls (cached) -> rows -> summary and report."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .benchmarks import (
    answer_files,
    check_complete,
    load_alignbench,
    load_alignbench_answers,
    load_fastchat_answers,
    load_mt_bench,
)
from .client import JudgeCache, JudgeClient
from .config import JudgeConfig
from .prompts import short_hash
from .report import write_report
from .rundir import RowWriter, finish_run, start_run
from .runner import run_tasks
from .tasks import JudgeTask, alignbench_tasks, mt_bench_pair_tasks, mt_bench_single_tasks, select_questions

logger = logging.getLogger("align.judging")
MODES = ("single", "pairwise", "both")


@dataclass(frozen=True)
class JudgeRequest:
    """What to judge. Answer paths are a FastChat/THUDM answer file or a directory of them (one per model)."""

    mt_bench_answers: str | Path | None = None
    alignbench_answers: str | Path | None = None
    mode: str = "single"  # MT-Bench: single-answer grading, pairwise against `baseline`, or both
    baseline: str = "gpt-3.5-turbo"
    models: tuple[str, ...] | None = None  # judge only these models (the baseline is always loaded)
    questions_per_category: int | None = None  # a labelled subset, for demos and smoke tests
    question_ids: tuple[int, ...] | None = None  # likewise (applied to each benchmark given)
    alignbench_dir: str | Path | None = None
    note: str | None = None
    warning: str | None = None  # shown at the top of the report (e.g. "these scores mean nothing")

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
        keep = request.baseline if request.mode != "single" else None
        files = _selected(answer_files(request.mt_bench_answers), request.models, keep)
        answers = {model: load_fastchat_answers(path) for model, path in files.items()}
        for model, path in files.items():
            check_complete(answers[model], [q["question_id"] for q in questions], path)
        if request.mode in ("single", "both"):
            graded = {m: a for m, a in answers.items() if request.models is None or m in request.models}
            tasks += mt_bench_single_tasks(bench, questions, graded, max_tokens=judge.max_tokens)
        if request.mode in ("pairwise", "both"):
            tasks += mt_bench_pair_tasks(bench, questions, answers, request.baseline, max_tokens=judge.max_tokens)
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
        "counts": {"judge_tasks": len(tasks), "repeats": judge.repeats},
        **provenance,
    }
    run, resumed = start_run(out_dir, meta)
    logger.info("%s run %s: %d judge tasks x %d repeat(s) with %s at %s", "resuming" if resumed else "starting",
                run.run_id, len(tasks), judge.repeats, judge.model, judge.base_url)
    client = JudgeClient(judge, JudgeCache(cache_dir or out_dir / "cache"))
    writer = RowWriter(run)
    try:
        rows = run_tasks(client, tasks, on_row=writer)
    finally:
        writer.close()
    finish_run(run, rows, dict(client.stats))
    failed = sum(1 for row in rows if row["error"])
    logger.info("run %s finished: %d judgments, %d failed; calls %s", run.run_id, len(rows), failed, dict(client.stats))
    return write_report(out_dir)
