"""Data hygiene in the training stages: benchmark decontamination and duplicate removal, every drop counted.

`clean_training_rows(dataset, args, report)` runs on the conversational rows of the mixture (chat `messages`,
or preference `prompt`/`chosen`/`rejected`, with a `source` column) before tokenisation. Recipe keys
(align.training.config.KlearArguments): `decontaminate`, `decontaminate_action`, `alignbench_dir`,
`dedup`, `dedup_threshold`. The counts go into the report, hence into `data_card.json`:

    "decontamination": {"checked_against": [...], "action": "drop" | "report",
                        "flagged": {"mt_bench": n, ...}, "dropped": {"mt_bench": n, ...}, "examples": [...]}
    "deduplication": {"mode": "exact" | "near", "threshold": 0.8, "dropped": {source: {"exact": n, "near": n}}}
"""

from __future__ import annotations

from collections import Counter

from .contamination import BATCH, TEXT_FIELDS, ContaminationIndex, load_eval_texts, row_segments, tokens
from .dedup import NUM_PERM, SHINGLE, find_duplicates
from .sources import DataError, DataReport

DEDUP_MODES = ("none", "exact", "near")
ORIGIN_COLUMNS = ("origin", "location")  # a row's place in its source file: weighted copies share it
EXAMPLES = 20


def _tokenised_rows(dataset) -> list[list[tuple[str, tuple[str, ...]]]]:
    columns = [name for name in TEXT_FIELDS if name in dataset.column_names]
    if not columns:
        raise DataError(f"no text to check: the rows have none of the columns {', '.join(TEXT_FIELDS)}")
    rows = []
    for batch in dataset.select_columns(columns).iter(batch_size=1000):
        for values in zip(*(batch[name] for name in columns)):
            row = dict(zip(columns, values))
            rows.append([(name, tokens(text)) for name, text in row_segments(row)])
    return rows


def decontaminate(rows, locations, against: list[str], action: str, alignbench_dir=None) -> tuple[dict, dict]:
    """`{row: benchmark it is dropped for}` (empty when `action` is "report") and the data card's section.

    `flagged`/`dropped` count rows per benchmark (a row matching two benchmarks counts under both);
    `rows_dropped` counts each row once."""
    index = ContaminationIndex(load_eval_texts(against, alignbench_dir))
    benchmarks = list(dict.fromkeys(text.benchmark for text in index.texts))
    flagged, examples, hit = Counter(), [], {}
    results = [flags for start in range(0, len(rows), BATCH) for flags in index.scan_many(rows[start:start + BATCH])]
    for i, flags in enumerate(results):
        for flag in flags:
            flagged[flag.benchmark] += 1
            if len(examples) < EXAMPLES:
                examples.append({"row": i, "location": locations[i], "benchmark": flag.benchmark,
                                 "question_id": flag.question_id, "part": flag.part, "field": flag.field,
                                 "evidence": flag.evidence})
        if flags:
            hit[i] = min((flag.benchmark for flag in flags), key=benchmarks.index)
    dropping = action == "drop"
    section = {
        "checked_against": benchmarks,
        "action": action,
        "rows_checked": len(rows),
        "flagged": {name: flagged[name] for name in benchmarks},
        "dropped": {name: flagged[name] if dropping else 0 for name in benchmarks},
        "rows_dropped": len(hit) if dropping else 0,
        "unchecked_short_texts": dict(index.unchecked),
        "examples": examples,
    }
    return (hit if dropping else {}), section


def clean_training_rows(dataset, args, report: DataReport):
    """Decontaminate, then deduplicate, the un-tokenised training rows; returns the rows kept.

    `args` carries the recipe keys; `report` receives the counts (also in `report.dropped`, so the printed
    summary and the data card's totals include them)."""
    against = list(getattr(args, "decontaminate", None) or [])
    mode = getattr(args, "dedup", "none") or "none"
    if mode not in DEDUP_MODES:
        raise DataError(f"dedup must be one of {', '.join(DEDUP_MODES)}, got {mode!r}")
    if not against and mode == "none":
        return dataset
    rows = _tokenised_rows(dataset)
    n = len(rows)
    sources = dataset["source"] if "source" in dataset.column_names else ["(mixture)"] * n
    locations = dataset["location"] if "location" in dataset.column_names else [f"row {i}" for i in range(n)]
    drop: set[int] = set()

    if against:
        action = args.decontaminate_action
        contaminated, section = decontaminate(rows, locations, against, action, getattr(args, "alignbench_dir", None))
        report.details["decontamination"] = section
        for benchmark in section["checked_against"]:
            named = [locations[i] for i, name in contaminated.items() if name == benchmark]
            if named:
                report.drop(f"benchmark contamination ({benchmark})", *named[:EXAMPLES], count=len(named))
        drop = set(contaminated)

    if mode != "none":
        survivors = [i for i in range(n) if i not in drop]
        origin_column = next((c for c in ORIGIN_COLUMNS if c in dataset.column_names), None)
        origins = dataset[origin_column] if origin_column else None
        threshold = args.dedup_threshold if mode == "near" else None
        found = find_duplicates(
            [rows[i] for i in survivors], [sources[i] for i in survivors], threshold,
            origins=[(sources[i], origins[i]) for i in survivors] if origins else None,
        )
        kept = {survivors[j] for j in found.keep}
        drop |= set(survivors) - kept
        report.details["deduplication"] = {
            "mode": mode,
            "threshold": threshold,
            "shingle_tokens": SHINGLE if threshold is not None else None,
            "num_perm": NUM_PERM if threshold is not None else None,
            "rows_checked": len(survivors),
            "dropped": {source: dict(counts) for source, counts in found.dropped.items()},
            "examples": [{**e, "row": survivors[e["row"]], "location": locations[survivors[e["row"]]],
                          "duplicate_of": None if e["duplicate_of"] is None else locations[survivors[e["duplicate_of"]]]}
                         for e in found.dropped_rows[:EXAMPLES]],
        }
        for kind in ("exact", "near", "copy of a dropped row"):
            named = [locations[survivors[e["row"]]] for e in found.dropped_rows if e["kind"] == kind]
            if found.count(kind):
                report.drop(f"duplicate ({kind})", *named, count=found.count(kind))

    if not drop:
        return dataset
    return dataset.select([i for i in range(n) if i not in drop])
