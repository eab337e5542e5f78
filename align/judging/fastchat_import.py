"""Import FastChat judgments (model_judgment/<judge>_single.jsonl) into a judge directory.

FastChat's rows: question_id, model, judge ([judge model, template name]), user_prompt,
judgment, score, turn, tstamp. A score of -1 (FastChat could not parse the judgment) becomes a
failed judgment, excluded and counted; every other score is taken as FastChat gave it, so the
numbers match FastChat's show_result.py. Each judgment is also re-read by the strict parser,
and the report counts where the two disagree (e.g. FastChat took a "[1]" citation as a rating).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from .benchmarks import DataError, MTBench, load_mt_bench, read_jsonl
from .parsing import JudgmentParseError, parse_mt_bench_rating
from .prompts import mt_bench_template_hash
from .report import write_report
from .runs import finish_run, start_run
from .judgments import base_row
from .tasks import MT_BENCH, JudgeTask

REQUIRED = ("question_id", "model", "judge", "judgment", "score", "turn")


def convert_fastchat_rows(rows: list[dict], source: Path, bench: MTBench) -> tuple[list[dict], dict]:
    """Pure: FastChat single-answer judgments -> (our rows, counts)."""
    categories = {q["question_id"]: q["category"] for q in bench.questions}
    converted, seen = [], Counter()
    counts = Counter()
    for line_no, row in enumerate(rows, start=1):
        where = f"{source}:{line_no}"
        if "model_1" in row:
            raise DataError(f"{where}: a pairwise judgment (model_1/model_2); import-fastchat reads *_single.jsonl")
        judge = row["judge"]
        if not (isinstance(judge, list) and len(judge) == 2 and all(isinstance(j, str) for j in judge)):
            raise DataError(f"{where}: field 'judge' must be [judge model, template name], got {judge!r}")
        if row["question_id"] not in categories:
            raise DataError(f"{where}: field 'question_id' {row['question_id']!r} is not an MT-Bench question")
        if row["turn"] not in (1, 2):
            raise DataError(f"{where}: field 'turn' must be 1 or 2, got {row['turn']!r}")
        score = row["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise DataError(f"{where}: field 'score' must be a number, got {score!r}")
        if not isinstance(row["judgment"], str):
            raise DataError(f"{where}: field 'judgment' must be the judge's text")
        key = (row["model"], row["question_id"], row["turn"])
        repeat = seen[key]
        seen[key] += 1
        counts["duplicate_judgments"] += repeat > 0
        template = bench.judge_prompts.get(judge[1])
        task = JudgeTask(
            benchmark=MT_BENCH,
            question_id=row["question_id"],
            turn=row["turn"],
            category=categories[row["question_id"]],
            model=row["model"],
            judge_prompt=judge[1],
            prompt_hash=mt_bench_template_hash(template) if template else "unknown-template",
            messages=[],
            max_tokens=None,
        )
        out = base_row(task, judge[0], repeat)
        out.update(judgment=row["judgment"], attempts=1, cached=False)
        if score == -1:
            out["error"] = "fastchat: score -1 (FastChat found no rating in the judgment)"
        else:
            out["score"] = float(score)
            try:
                strict = parse_mt_bench_rating(row["judgment"])
                counts["strict_parser_disagrees"] += strict != float(score)
            except JudgmentParseError as err:
                counts["strict_parser_rejects"] += 1
                out["strict_parse_error"] = str(err)
        converted.append(out)
    return converted, dict(counts)


def import_fastchat(judgments: str | Path, out_dir: str | Path) -> Path:
    """Convert, store as a finished run in DIR and rebuild DIR's report; returns report.md."""
    judgments = Path(judgments)
    rows = read_jsonl(judgments, REQUIRED)
    converted, counts = convert_fastchat_rows(rows, judgments, load_mt_bench())
    meta = {
        "fingerprint": hashlib.sha256(judgments.read_bytes()).hexdigest()[:16],
        "judge": {"model": ", ".join(sorted({row["judge_model"] for row in converted})), "base_url": None},
        "source": f"imported from FastChat judgments {judgments}",
        "subset": None,
        "counts": {"fastchat_rows": len(rows), **counts},
    }
    run, _ = start_run(out_dir, meta)
    finish_run(run, converted, {})
    return write_report(out_dir)
