"""The judge output directory: every run kept, so each report compares with the earlier ones.

    DIR/runs/<run_id>/run.json          what was judged, by which judge, started/finished
    DIR/runs/<run_id>/judgments.jsonl   one row per judgment (see judgments.py for the schema)
    DIR/runs/<run_id>/summary.json      that run's scores
    DIR/cache/                          judge-call cache shared by the runs (see client.py)
    DIR/answers/<benchmark>/<model>.jsonl   answers generated here (FastChat / THUDM format)
    DIR/summary.json, report.md, report.html, radar_*.png   the latest finished run, with history

A run that was interrupted (no `finished` in run.json) is resumed by the next run in the same
directory with the same fingerprint (same judge, prompts, answers and selection); its calls
come back from the cache.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from align.common.files import write_json, write_jsonl

from align.data.benchmarks import read_jsonl

RUNS_DIR = "runs"


def row_sort_key(row: dict) -> tuple:
    return (
        row["benchmark"],
        row["model"],
        row["question_id"],
        row["turn"],
        row.get("game") or 0,
        row.get("repeat") or 0,
    )


@dataclass
class Run:
    directory: Path
    meta: dict

    @property
    def run_id(self) -> str:
        return self.directory.name

    @property
    def finished(self) -> bool:
        return bool(self.meta.get("finished"))

    @property
    def judgments_path(self) -> Path:
        return self.directory / "judgments.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.directory / "summary.json"

    def rows(self) -> list[dict]:
        if not self.judgments_path.is_file():
            return []
        return read_jsonl(self.judgments_path, ("benchmark", "question_id", "turn", "model", "error"))

    def save_meta(self) -> None:
        write_json(self.directory / "run.json", self.meta)


def list_runs(out_dir: str | Path) -> list[Run]:
    """All runs in DIR, oldest first (run ids sort by time)."""
    runs_dir = Path(out_dir) / RUNS_DIR
    if not runs_dir.is_dir():
        return []
    runs = []
    for directory in sorted(path for path in runs_dir.iterdir() if path.is_dir()):
        meta_path = directory / "run.json"
        if meta_path.is_file():
            runs.append(Run(directory, json.loads(meta_path.read_text(encoding="utf-8"))))
    return runs


def _new_run_id(runs_dir: Path) -> str:
    base = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    run_id, suffix = base, 1
    while (runs_dir / run_id).exists():
        suffix += 1
        run_id = f"{base}-{suffix}"
    return run_id


def start_run(out_dir: str | Path, meta: dict) -> tuple[Run, bool]:
    """(run, resumed): resume the latest run if it was interrupted with the same fingerprint."""
    runs = list_runs(out_dir)
    if runs and not runs[-1].finished and runs[-1].meta.get("fingerprint") == meta["fingerprint"]:
        run = runs[-1]
        run.meta["resumed"] = run.meta.get("resumed", 0) + 1
        # The endpoint may have moved (same judge model elsewhere): record the one used from now on.
        used = run.meta.get("judges_used") or [run.meta.get("judge")]
        run.meta["judges_used"] = used + ([meta["judge"]] if meta.get("judge") != used[-1] else [])
        run.meta["judge"] = meta.get("judge")
        run.save_meta()
        return run, True
    runs_dir = Path(out_dir) / RUNS_DIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    run = Run(runs_dir / _new_run_id(runs_dir), {**meta, "started": time.time(), "finished": None})
    run.directory.mkdir()
    run.save_meta()
    return run, False


class RowWriter:
    """Streams rows to the run's judgments.jsonl as they complete (a kill leaves what was done)."""

    def __init__(self, run: Run):
        self._handle = run.judgments_path.open("w", encoding="utf-8")

    def __call__(self, row: dict) -> None:
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def finish_run(run: Run, rows: list[dict], stats: dict) -> None:
    write_jsonl(run.judgments_path, sorted(rows, key=row_sort_key))
    run.meta.update(finished=time.time(), call_stats=stats)
    run.save_meta()
