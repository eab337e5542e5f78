"""summary.json: a run's scores with the judge and prompt hashes that produced them, plus history.

    {
      "run_id", "started", "finished", "note", "warning", "subset",
      "judge": {"model", "base_url", "base_urls_used", "prompt_hashes": {template: hash}, "config": {...}},
      "training_data": null | {"data_card": path, "decontamination": null | {"checked_against",
                               "action", "flagged": {benchmark: n}, "dropped": {benchmark: n}}},
      "benchmarks": {
        "mt_bench":      {model: {"overall", "turn_1", "turn_2", "per_category", "ci95", ...}},
        "mt_bench_pair": {model: {"baseline", "win", "loss", "tie", "win_rate_adjusted", ...}},
        "alignbench":    {model: {"overall", "reasoning", "language", "per_category", "per_dimension", ...}}
      },
      "counts": {"judge_calls", "judge_calls_failed", "items_without_score", ...},
      "failures": [first failed judgments: {benchmark, model, question_id, turn, error, judgment}],
      "history": [{"run_id", "finished", "judge_model", "prompt_hashes", "headline": {benchmark: {model: x}}}]
    }
"""

from __future__ import annotations

import json
from collections import Counter

from .aggregate import summarize_rows
from align.common.files import write_json

from .runs import Run
from .tasks import ALIGNBENCH, MT_BENCH, MT_BENCH_PAIR

SHOWN_FAILURES = 20
# The one number per benchmark and model that the history table compares.
HEADLINE_FIELD = {MT_BENCH: "overall", MT_BENCH_PAIR: "win_rate_adjusted", ALIGNBENCH: "overall"}


def _failure_examples(rows: list[dict]) -> list[dict]:
    failed = [row for row in rows if row["error"]]
    return [
        {
            "benchmark": row["benchmark"],
            "model": row["model"],
            "question_id": row["question_id"],
            "turn": row["turn"],
            "game": row.get("game"),
            "repeat": row.get("repeat"),
            "error": row["error"],
            "judgment": (row["judgment"] or "")[:500],
        }
        for row in failed[:SHOWN_FAILURES]
    ]


def run_summary(run: Run, rows: list[dict]) -> dict:
    """Pure: the summary of one run from its rows and run.json."""
    meta = run.meta
    prompt_hashes = {row["judge_prompt"]: row["prompt_hash"] for row in rows}
    judge_models = sorted({row["judge_model"] for row in rows})
    failed_reasons = Counter(row["error"].split(":", 1)[0] for row in rows if row["error"])
    benchmarks = summarize_rows(rows)
    return {
        "run_id": run.run_id,
        "started": meta.get("started"),
        "finished": meta.get("finished"),
        "note": meta.get("note"),
        "warning": meta.get("warning"),
        "subset": meta.get("subset"),
        "source": meta.get("source"),
        "judge": {
            "model": ", ".join(judge_models) if judge_models else meta.get("judge", {}).get("model"),
            "base_url": meta.get("judge", {}).get("base_url"),
            # a resumed run may have reached the judge at another address: every one used, in order
            "base_urls_used": [judge.get("base_url") for judge in meta.get("judges_used") or [meta.get("judge", {})]],
            "prompt_hashes": dict(sorted(prompt_hashes.items())),
            "config": meta.get("judge", {}),
        },
        "training_data": meta.get("training_data"),
        "benchmarks": benchmarks,
        "counts": {
            "judge_calls": sum(row["attempts"] for row in rows),
            "judgments": len(rows),
            "judgments_failed": sum(1 for row in rows if row["error"]),
            "failed_by_reason": dict(failed_reasons),
            "parse_retries": sum(len(row["failed_attempts"]) for row in rows),
            "from_cache": sum(1 for row in rows if row["cached"]),
            # what the invocation that finished the run sent to the endpoint
            "api_calls": (meta.get("call_stats") or {}).get("api_calls", 0),
            "api_retries": (meta.get("call_stats") or {}).get("api_retries", 0),
            # cache files that could not be read back and were requested again
            "cache_damaged": (meta.get("call_stats") or {}).get("cache_corrupt", 0),
            **{key: value for key, value in (meta.get("counts") or {}).items()},
        },
        "failures": _failure_examples(rows),
    }


def headline(summary: dict) -> dict[str, dict[str, float | None]]:
    return {
        benchmark: {model: scores.get(HEADLINE_FIELD[benchmark]) for model, scores in per_model.items()}
        for benchmark, per_model in summary["benchmarks"].items()
    }


def history_entry(summary: dict) -> dict:
    return {
        "run_id": summary["run_id"],
        "finished": summary["finished"],
        "judge_model": summary["judge"]["model"],
        "prompt_hashes": summary["judge"]["prompt_hashes"],
        "subset": summary["subset"],
        "headline": headline(summary),
    }


def run_summaries(runs: list[Run], rebuild: bool) -> list[dict]:
    """Every finished run's summary, oldest first: recomputed from its judgments (and rewritten)
    when `rebuild` or when missing, else read from its summary.json."""
    summaries = []
    for run in runs:
        if not run.finished:
            continue
        if rebuild or not run.summary_path.is_file():
            summary = run_summary(run, run.rows())
            write_json(run.summary_path, summary)
        else:
            summary = json.loads(run.summary_path.read_text(encoding="utf-8"))
        summaries.append(summary)
    return summaries
