"""`python -m annotation from-preferences`: preference rows -> push's input (to re-annotate them,
or to make gold pairs from trusted ones).

Reads what `align.dpo` reads, with the same code (`align.data`): TRL's four preference formats
(e.g. the demo's `dpo.jsonl` or an earlier pull) and Anthropic HH-RLHF's transcripts
(`{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}`, `.jsonl` or `.jsonl.gz`),
whose turns become messages as `align.data.transcripts` cuts them; as in training, a file is HH as a
whole: its rows without turn markers are skipped and counted, and a file whose turn markers are all
damaged stops in one line naming the layout expected. Each row becomes
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from annotation.errors import AnnotationError

if TYPE_CHECKING:  # align.data imports torch and transformers (seconds): only where a file is read
    from align.data.sources import DataReport


NO_PAIR = "no pair to compare"


@dataclass
class ConvertReport:
    read: int = 0
    written: int = 0
    gold: int = 0
    duplicate_prompts_skipped: int = 0
    beyond_limit: int = 0
    data: Optional[DataReport] = None  # the reader's: rows skipped as no pair, by why, and how the file was read

    @property
    def not_a_pair_skipped(self) -> int:
        return sum(self.data.dropped.values()) if self.data else 0

    def line(self, source: Path, out: Path) -> str:
        lines = [f"{source}: read {self.read} preference rows, wrote {self.written} pairs to {out} "
                 f"({self.gold} marked gold; duplicate prompts skipped: {self.duplicate_prompts_skipped}; "
                 f"rows that are no pair skipped: {self.not_a_pair_skipped}; left out by --limit: {self.beyond_limit})"]
        if self.data:
            lines += [f"  skipped ({why}): {count} (first: {'; '.join(self.data.dropped_rows[why][:3])})"
                      for why, count in self.data.dropped.items()]
            lines += [f"  note: {note}" for note in self.data.notes]
        return "\n".join(lines)


def read_pairs_to_reannotate(path: Path) -> tuple[list[tuple[str, dict]], ConvertReport]:
    """(location, pair with explicit prompt and one answer per side) per comparable row, and the report
    counting the rows read and those skipped, by why.

    Rows are read and normalised by training's own reader (`align.data.preference.load_preference_pairs`:
    whether a file holds HH transcripts is decided per file, their turns cut by `align.data.transcripts`),
    so annotators see the turns that DPO would train on; a row that is no pair to compare is skipped and
    counted instead of stopping the conversion. A file that cannot be read stops it in one line."""
    from align.data.preference import load_preference_pairs
    from align.data.sources import DataError, DataReport, Source

    path = Path(path)
    if not path.exists():
        raise AnnotationError(f"{path} does not exist")
    report = ConvertReport(data=DataReport())
    try:
        triples = load_preference_pairs([Source(path=str(path))], report.data, validate_pair=_comparable_pair)
    except DataError as error:
        skipped = [where for named in report.data.dropped_rows.values() for where in named][:3]
        raise AnnotationError("; ".join([str(error)] + skipped)) from error
    report.read = report.data.sources[str(path)]["read"]
    return [(where, pair) for _, where, pair in triples], report


def _comparable_pair(row: dict, where: str) -> dict:
    """A row as training normalises it, as messages, or `SkipRow` saying why annotators could not compare it."""
    from align.data.preference import validate_preference_row
    from align.data.sources import DataError, SkipRow

    try:
        normal = validate_preference_row(row, where)
    except SkipRow:
        raise
    except DataError as error:  # training stops at such a row; a conversion skips it and names it
        raise SkipRow(NO_PAIR, str(error)) from None
    if isinstance(normal["prompt"], str):
        normal = {
            "prompt": [{"role": "user", "content": normal["prompt"]}],
            "chosen": [{"role": "assistant", "content": normal["chosen"]}],
            "rejected": [{"role": "assistant", "content": normal["rejected"]}],
        }
    for side in ("chosen", "rejected"):
        if len(normal[side]) != 1:
            raise SkipRow(NO_PAIR, f"{where}: field '{side}' holds {len(normal[side])} messages; a pair compares one answer each")
        if not normal[side][0]["content"].strip():
            raise SkipRow(NO_PAIR, f"{where}: field '{side}': the answer is empty")
    if normal["chosen"][0]["content"].strip() == normal["rejected"][0]["content"].strip():
        raise SkipRow(NO_PAIR, f"{where}: fields 'chosen' and 'rejected' hold the same answer")
    if any(not message["content"].strip() for message in normal["prompt"]):
        raise SkipRow(NO_PAIR, f"{where}: field 'prompt' has an empty message")
    return normal


def to_push_rows(
    rows, source_name: str, chosen_model: str = "chosen", rejected_model: str = "rejected",
    gold: int = 0, limit: Optional[int] = None, seed: int = 0, report: Optional[ConvertReport] = None,
) -> tuple:
    """(push rows, ConvertReport) from (location, comparable pair) pairs (pure); `report`, if given, is
    the reader's, completed here."""
    if chosen_model == rejected_model:
        raise AnnotationError("--chosen-model and --rejected-model must differ (gold pairs name the better one)")
    if gold < 0:
        raise AnnotationError(f"--gold must be 0 or more, not {gold}")
    if limit is not None and limit < 1:
        raise AnnotationError(f"--limit must be at least 1, not {limit}")
    rows = list(rows)
    report = report or ConvertReport(read=len(rows))
    out, seen = [], set()
    for _, row in rows:
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
    if gold > len(out):
        raise AnnotationError(f"--gold {gold}: only {len(out)} pairs were converted")
    for index in random.Random(seed).sample(range(len(out)), gold):
        out[index]["gold"] = chosen_model
    report.written, report.gold = len(out), gold
    return out, report


def convert_file(source: Path, out: Path, **options) -> ConvertReport:
    source_name = options.pop("source_name", None) or Path(source).name.split(".")[0]
    pairs, report = read_pairs_to_reannotate(source)
    rows, report = to_push_rows(pairs, source_name, report=report, **options)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return report
