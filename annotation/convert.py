"""`python -m annotation from-preferences`: preference rows -> push's input (to re-annotate them,
or to make gold pairs from trusted ones).

Reads what `align.dpo` reads, with the same code (`align.data`): TRL's four preference formats
(e.g. the demo's `dpo.jsonl` or an earlier pull) and Anthropic HH-RLHF's transcripts
(`{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}`, `.jsonl` or `.jsonl.gz`),
whose turns become messages as `align.data.transcripts` cuts them. Each row becomes
`{"id", "prompt", "completions": [chosen, rejected], "metadata": {"source"}}`, the answers named by
`--chosen-model` / `--rejected-model` (annotators never see the names). `--gold N` marks N rows,
drawn with `--seed`, as gold pairs (the chosen answer is the better one). A prompt seen before is
skipped and counted (push needs one row per prompt); so is a row that is no pair to compare
(HH has transcripts whose two sides diverge before the last answer, and identical or empty
answers), the first few named; `--limit` keeps the first N rows.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from annotation.errors import AnnotationError


@dataclass
class ConvertReport:
    read: int = 0
    written: int = 0
    gold: int = 0
    duplicate_prompts_skipped: int = 0
    not_a_pair_skipped: int = 0
    beyond_limit: int = 0
    examples: list = field(default_factory=list)  # the first rows skipped as no pair, with why

    def line(self, source: Path, out: Path) -> str:
        return (f"{source}: read {self.read} preference rows, wrote {self.written} pairs to {out} "
                f"({self.gold} marked gold; duplicate prompts skipped: {self.duplicate_prompts_skipped}; "
                f"rows that are no pair skipped: {self.not_a_pair_skipped}; left out by --limit: {self.beyond_limit})"
                + "".join(f"\n  skipped: {example}" for example in self.examples))


def read_pairs_to_reannotate(path: Path) -> Iterator[tuple]:
    """(location, row with explicit prompt and one answer per side, or why it is no pair) per row.

    Rows are read and normalised exactly as training reads them (`align.data.sources.read_rows`,
    `align.data.preference.validate_preference_row`, HH transcripts by `align.data.transcripts`), so
    annotators see the turns that DPO would train on."""
    from align.data.sources import DataError, Source, read_rows

    path = Path(path)
    if not path.exists():
        raise AnnotationError(f"{path} does not exist")
    try:
        for where, row in read_rows(Source(path=str(path))):
            try:
                yield where, _comparable_pair(row, where)
            except (AnnotationError, DataError) as error:  # SkipRow (an HH row that is no transcript) included
                yield where, str(error)
    except DataError as error:
        raise AnnotationError(str(error)) from error


def _comparable_pair(row: dict, where: str) -> dict:
    from align.data.preference import validate_preference_row

    normal = validate_preference_row(row, where)
    if isinstance(normal["prompt"], str):
        normal = {
            "prompt": [{"role": "user", "content": normal["prompt"]}],
            "chosen": [{"role": "assistant", "content": normal["chosen"]}],
            "rejected": [{"role": "assistant", "content": normal["rejected"]}],
        }
    for side in ("chosen", "rejected"):
        if len(normal[side]) != 1:
            raise AnnotationError(f"{where}: field '{side}' holds {len(normal[side])} messages; a pair compares one answer each")
        if not normal[side][0]["content"].strip():
            raise AnnotationError(f"{where}: field '{side}': the answer is empty")
    if normal["chosen"][0]["content"].strip() == normal["rejected"][0]["content"].strip():
        raise AnnotationError(f"{where}: fields 'chosen' and 'rejected' hold the same answer")
    if any(not message["content"].strip() for message in normal["prompt"]):
        raise AnnotationError(f"{where}: field 'prompt' has an empty message")
    return normal


def to_push_rows(
    rows, source_name: str, chosen_model: str = "chosen", rejected_model: str = "rejected",
    gold: int = 0, limit: Optional[int] = None, seed: int = 0,
) -> tuple:
    """(push rows, ConvertReport) from (location, preference row) pairs (pure)."""
    if chosen_model == rejected_model:
        raise AnnotationError("--chosen-model and --rejected-model must differ (gold pairs name the better one)")
    report = ConvertReport()
    out, seen = [], set()
    for where, row in rows:
        report.read += 1
        if isinstance(row, str):  # why it is no pair
            report.not_a_pair_skipped += 1
            if len(report.examples) < 3:
                report.examples.append(row)
            continue
        key = json.dumps(row["prompt"], sort_keys=True)
        if key in seen:
            report.duplicate_prompts_skipped += 1
            continue
        if limit is not None and len(out) >= limit:
            report.beyond_limit += 1
            continue
        seen.add(key)
        out.append({
            "id": f"{source_name}-{len(out)}",
            "prompt": row["prompt"],
            "completions": [
                {"model": chosen_model, "content": row["chosen"][0]["content"]},
                {"model": rejected_model, "content": row["rejected"][0]["content"]},
            ],
            "metadata": {"source": source_name},
        })
    if not out:
        raise AnnotationError("no row could be converted" + "".join(f"; {example}" for example in report.examples))
    if gold > len(out):
        raise AnnotationError(f"--gold {gold}: only {len(out)} pairs were converted")
    for index in random.Random(seed).sample(range(len(out)), gold):
        out[index]["gold"] = chosen_model
    report.written, report.gold = len(out), gold
    return out, report


def convert_file(source: Path, out: Path, **options) -> ConvertReport:
    source_name = options.pop("source_name", None) or Path(source).name.split(".")[0]
    rows, report = to_push_rows(read_pairs_to_reannotate(source), source_name, **options)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return report
