"""Import FastChat judgments (model_judgment/<judge>_single.jsonl or <judge>_pair.jsonl) into a
judge directory, so they get the same summary and report as ours.

Single: question_id, model, judge ([judge model, template name]), user_prompt, judgment, score,
turn, tstamp. A score of -1 (FastChat found no rating) becomes a failed judgment, excluded and
counted; every other score is taken as FastChat gave it. Rows that repeat a (model, question,
turn), e.g. from re-running gen_judgment.py, become repeats of that item, which scores their
median; FastChat's show_result instead averages every row, so the summary also gives FastChat's
figure (`fastchat_show_result`) and the report shows both when they differ.

Pairwise: question_id, model_1, model_2, g1_winner, g2_winner (model_1 / model_2 / tie / error),
judge, g1_judgment, g2_judgment, turn. Each row becomes two rows, game 1 (model_1 is A) and game
2 (model_2 is A), with model = model_1 and the opponent model_2; "error" is a failed judgment.
A file whose model_2 is always one model that never appears as model_1 came from
--mode pairwise-baseline; any other from pairwise-all.

Each judgment is also re-read by our parser, and the counts say where the two readings differ
(e.g. FastChat took a "[1]" citation as a rating, or "[[A]]" anywhere as A's win).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from align.data.benchmarks import DataError, MTBench, load_mt_bench, read_jsonl
from .judgments import base_row
from .parsing import JudgmentParseError, parse_mt_bench_rating, parse_pair_verdict
from .prompts import mt_bench_template_hash
from .report import write_report
from .runs import finish_run, start_run
from .tasks import MT_BENCH, MT_BENCH_PAIR, JudgeTask

SINGLE_FIELDS = ("question_id", "model", "judge", "judgment", "score", "turn")
PAIR_FIELDS = ("question_id", "model_1", "model_2", "g1_winner", "g2_winner", "judge", "g1_judgment",
               "g2_judgment", "turn")
PAIR_WINNERS = ("model_1", "model_2", "tie", "error")


def _check_common(row: dict, where: str, categories: dict[int, str]) -> list[str]:
    judge = row["judge"]
    if not (isinstance(judge, list) and len(judge) == 2 and all(isinstance(j, str) for j in judge)):
        raise DataError(f"{where}: field 'judge' must be [judge model, template name], got {judge!r}")
    if row["question_id"] not in categories:
        raise DataError(f"{where}: field 'question_id' {row['question_id']!r} is not an MT-Bench question")
    if row["turn"] not in (1, 2):
        raise DataError(f"{where}: field 'turn' must be 1 or 2, got {row['turn']!r}")
    return judge


def _task(bench: MTBench, categories: dict[int, str], row: dict, benchmark: str, model: str, template: str,
          **pair: object) -> JudgeTask:
    prompt = bench.judge_prompts.get(template)
    return JudgeTask(
        benchmark=benchmark,
        question_id=row["question_id"],
        turn=row["turn"],
        category=categories[row["question_id"]],
        model=model,
        judge_prompt=template,
        prompt_hash=mt_bench_template_hash(prompt) if prompt else "unknown-template",
        messages=[],
        max_tokens=None,
        **pair,
    )


def _repeat(seen: Counter, key: tuple, counts: Counter) -> int:
    """How many judgments of `key` came before this one (FastChat averages them all; we keep them as repeats)."""
    repeat = seen[key]
    seen[key] += 1
    counts["duplicate_judgments"] += repeat > 0
    return repeat


def convert_fastchat_rows(rows: list[dict], source: Path, bench: MTBench) -> tuple[list[dict], dict]:
    """Pure: FastChat single-answer judgments -> (our rows, counts)."""
    categories = {q["question_id"]: q["category"] for q in bench.questions}
    converted, seen, counts = [], Counter(), Counter()
    for line_no, row in enumerate(rows, start=1):
        where = f"{source}:{line_no}"
        if "model_1" in row:
            raise DataError(f"{where}: a pairwise judgment (model_1/model_2) in a file of single-answer judgments")
        judge = _check_common(row, where, categories)
        score = row["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise DataError(f"{where}: field 'score' must be a number, got {score!r}")
        if not isinstance(row["judgment"], str):
            raise DataError(f"{where}: field 'judgment' must be the judge's text")
        repeat = _repeat(seen, (row["model"], row["question_id"], row["turn"]), counts)
        out = base_row(_task(bench, categories, row, MT_BENCH, row["model"], judge[1]), judge[0], repeat)
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


def convert_fastchat_pair_rows(rows: list[dict], source: Path, bench: MTBench) -> tuple[list[dict], dict]:
    """Pure: FastChat pairwise judgments -> (our rows, two per FastChat row; counts)."""
    categories = {q["question_id"]: q["category"] for q in bench.questions}
    firsts = {row.get("model_1") for row in rows}
    seconds = {row.get("model_2") for row in rows}
    pairing = "baseline" if len(seconds) == 1 and not seconds & firsts else "all"
    converted, seen, counts = [], Counter(), Counter()
    for line_no, row in enumerate(rows, start=1):
        where = f"{source}:{line_no}"
        if "m1_score" in row:
            raise DataError(f"{where}: a pair graded by a single-answer judge (m1_score); only pairwise judges import")
        judge = _check_common(row, where, categories)
        repeat = _repeat(seen, (row["model_1"], row["model_2"], row["question_id"], row["turn"]), counts)
        for game in (1, 2):
            winner, judgment = row[f"g{game}_winner"], row[f"g{game}_judgment"]
            if winner not in PAIR_WINNERS:
                raise DataError(f"{where}: field 'g{game}_winner' must be one of {PAIR_WINNERS}, got {winner!r}")
            if not isinstance(judgment, str):
                raise DataError(f"{where}: field 'g{game}_judgment' must be the judge's text")
            task = _task(bench, categories, row, MT_BENCH_PAIR, row["model_1"], judge[1],
                         baseline=row["model_2"], game=game, pairing=pairing)
            out = base_row(task, judge[0], repeat)
            out.update(judgment=judgment, attempts=1, cached=False)
            if winner == "error":
                out["error"] = "fastchat: error (FastChat found no [[A]], [[B]] or [[C]] in the judgment)"
            else:
                out["verdict"] = {"model_1": "model", "model_2": "baseline", "tie": "tie"}[winner]
                a_is_model_1 = game == 1
                try:
                    ours = parse_pair_verdict(judgment)
                    ours = {"A": "model" if a_is_model_1 else "baseline",
                            "B": "baseline" if a_is_model_1 else "model"}.get(ours, ours)
                    counts["strict_parser_disagrees"] += ours != out["verdict"]
                except JudgmentParseError as err:
                    counts["strict_parser_rejects"] += 1
                    out["strict_parse_error"] = str(err)
            converted.append(out)
    counts["pairing_" + pairing] = 1
    return converted, dict(counts)


def import_fastchat(judgments: str | Path, out_dir: str | Path) -> Path:
    """Convert, store as a finished run in DIR and rebuild DIR's report; returns report.md."""
    judgments = Path(judgments)
    rows = read_jsonl(judgments)
    if not rows:
        raise DataError(f"{judgments}: no judgments in the file")
    pairwise = "model_1" in rows[0]
    required = PAIR_FIELDS if pairwise else SINGLE_FIELDS
    for line_no, row in enumerate(rows, start=1):
        for field in required:
            if field not in row:
                raise DataError(f"{judgments}:{line_no}: missing field {field!r}")
    convert = convert_fastchat_pair_rows if pairwise else convert_fastchat_rows
    converted, counts = convert(rows, judgments, load_mt_bench())
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
