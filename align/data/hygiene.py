"""Data hygiene in the training stages: benchmark decontamination and duplicate removal, every drop counted.

`clean_training_rows(dataset, hygiene, report)` runs on the conversational rows of the mixture (chat `messages`,
or preference `prompt`/`chosen`/`rejected`, with a `source` column) before tokenisation. `hygiene` is the
recipe's `DataHygiene`, built once when the recipe is parsed (`KlearArguments.data_hygiene`, from the keys
`decontaminate`, `decontaminate_action`, `alignbench_dir`, `dedup`, `dedup_threshold`). The counts go into
the report, hence into `data_card.json`:

    "decontamination": {"checked_against": [...], "action": "drop" | "report",
                        "flagged": {"mt_bench": n, ...}, "dropped": {"mt_bench": n, ...}, "examples": [...]}
    "deduplication": {"mode": "exact" | "near", "threshold": 0.8, "dropped": {source: {"exact": n, "near": n}}}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from .contamination import BATCH, TEXT_FIELDS, ContaminationIndex, load_eval_texts, row_segments, tokens
from .dedup import NUM_PERM, SHINGLE, Deduplicator
from .sources import DataError, DataReport

DEDUP_MODES = ("none", "exact", "near")
DECONTAMINATE_ACTIONS = ("drop", "report")
ORIGIN_COLUMNS = ("origin", "location")  # a row's place in its source file: weighted copies share it
EXAMPLES = 20


@dataclass(frozen=True)
class DataHygiene:
    """What to check the training rows for, and what to do with what is found."""

    decontaminate: tuple[str, ...] = ()  # mt_bench, alignbench, or eval .jsonl paths
    action: str = "report"  # "drop" or "report" the flagged rows
    alignbench_dir: str | None = None  # see align.data.benchmarks.resolve_alignbench_dir
    dedup: str = "none"  # one of DEDUP_MODES
    threshold: float = 0.8  # with dedup "near": the Jaccard similarity from which a row is a near duplicate

    def __post_init__(self) -> None:
        if self.action not in DECONTAMINATE_ACTIONS:
            raise DataError(f"decontaminate_action must be 'drop' or 'report', got {self.action!r}")
        if self.dedup not in DEDUP_MODES:
            raise DataError(f"dedup must be 'none', 'exact' or 'near', got {self.dedup!r}")
        if not 0 < self.threshold <= 1:
            raise DataError(f"dedup_threshold must be in (0, 1], got {self.threshold}")

    @property
    def active(self) -> bool:
        return bool(self.decontaminate) or self.dedup != "none"


def _tokenised_batches(dataset) -> Iterator[list[list[tuple[str, tuple[str, ...]]]]]:
    """The rows' `(field, tokens)` segments, BATCH rows at a time (never all rows' tokens at once)."""
    columns = [name for name in TEXT_FIELDS if name in dataset.column_names]
    if not columns:
        raise DataError(f"no text to check: the rows have none of the columns {', '.join(TEXT_FIELDS)}")
    for batch in dataset.select_columns(columns).iter(batch_size=BATCH):
        yield [[(name, tokens(text)) for name, text in row_segments(dict(zip(columns, values)))]
               for values in zip(*(batch[name] for name in columns))]


def clean_training_rows(dataset, hygiene: DataHygiene, report: DataReport):
    """Decontaminate, then deduplicate, the un-tokenised training rows; returns the rows kept.

    `report` receives the counts (also in `report.dropped`, so the printed summary and the data card's
    totals include them). A row dropped as contaminated is not offered to dedup."""
    if not hygiene.active:
        return dataset
    against, mode = list(hygiene.decontaminate), hygiene.dedup
    n = len(dataset)
    columns = dataset.column_names
    sources = dataset["source"] if "source" in columns else ["(mixture)"] * n
    locations = dataset["location"] if "location" in columns else [f"row {i}" for i in range(n)]
    origin_column = next((c for c in ORIGIN_COLUMNS if c in columns), None)
    origins = dataset[origin_column] if origin_column else None

    index = ContaminationIndex(load_eval_texts(against, hygiene.alignbench_dir)) if against else None
    benchmarks = against_order(index) if index else []
    dropping = hygiene.action == "drop"
    threshold = hygiene.threshold if mode == "near" else None
    deduplicator = Deduplicator(threshold) if mode != "none" else None
    flagged, examples, contaminated, drop = Counter(), [], {}, set()
    row = 0
    for batch in _tokenised_batches(dataset):
        for segments, flags in zip(batch, index.scan_many(batch) if index else [[]] * len(batch)):
            for flag in flags:
                flagged[flag.benchmark] += 1
                if len(examples) < EXAMPLES:
                    examples.append({"row": row, "location": locations[row], "benchmark": flag.benchmark,
                                     "question_id": flag.question_id, "part": flag.part, "field": flag.field,
                                     "evidence": flag.evidence})
            if flags and dropping:
                contaminated[row] = min((f.benchmark for f in flags), key=benchmarks.index)
                drop.add(row)
            elif deduplicator and not deduplicator.add(row, segments, sources[row],
                                                      (sources[row], origins[row]) if origins else None):
                drop.add(row)
            row += 1

    if index:
        report.details["decontamination"] = {
            "checked_against": benchmarks,
            "action": "drop" if dropping else "report",
            "rows_checked": n,
            "flagged": {name: flagged[name] for name in benchmarks},
            "dropped": {name: flagged[name] if dropping else 0 for name in benchmarks},
            "rows_dropped": len(contaminated),
            "unchecked_short_texts": dict(index.unchecked),
            "examples": examples,
        }
        for benchmark in benchmarks:
            named = [locations[i] for i, name in contaminated.items() if name == benchmark]
            if named:
                report.drop(f"benchmark contamination ({benchmark})", *named[:EXAMPLES], count=len(named))
    if deduplicator:
        found = deduplicator.result
        report.details["deduplication"] = {
            "mode": mode,
            "threshold": threshold,
            "shingle_tokens": SHINGLE if threshold is not None else None,
            "num_perm": NUM_PERM if threshold is not None else None,
            "rows_checked": n - len(contaminated),
            "dropped": {source: dict(counts) for source, counts in found.dropped.items()},
            "examples": [{**e, "location": locations[e["row"]],
                          "duplicate_of": None if e["duplicate_of"] is None else locations[e["duplicate_of"]]}
                         for e in found.dropped_rows[:EXAMPLES]],
        }
        for kind in ("exact", "near", "copy of a dropped row"):
            if found.count(kind):
                named = [locations[e["row"]] for e in found.dropped_rows[:1000] if e["kind"] == kind]
                report.drop(f"duplicate ({kind})", *named[:EXAMPLES], count=found.count(kind))
    if not drop:
        return dataset
    return dataset.select([i for i in range(n) if i not in drop])


def against_order(index: ContaminationIndex) -> list[str]:
    """The benchmarks checked, in the order given."""
    return list(dict.fromkeys(text.benchmark for text in index.texts))
