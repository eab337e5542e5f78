"""Where training rows come from: local JSONL/Parquet/`save_to_disk` directories or hub ids.

Every row travels with a location (`file.jsonl:12`, `dir[row 5]`) so that a validation error can
name the file, the line and the field. Weighted mixtures are sampled deterministically, and
`DataReport` counts what was read, used, truncated and dropped, and why.
"""

import json
import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """Bad input; the message names the location (file and line or row) and the field."""


@dataclass
class Source:
    """One dataset of a mixture. `weight` scales its rows: 0.5 takes half (a seeded sample), 2 takes each twice."""

    path: str
    weight: float = 1.0
    split: str = "train"

    @classmethod
    def parse(cls, spec: "str | dict | Source") -> "Source":
        if isinstance(spec, Source):
            return spec
        if isinstance(spec, str):
            return cls(path=spec)
        unknown = set(spec) - {"path", "weight", "split"}
        if unknown or "path" not in spec:
            raise DataError(f"dataset mixture entry {spec!r}: expected keys path, weight, split (got {sorted(spec)})")
        source = cls(**spec)
        if not (isinstance(source.weight, int | float) and source.weight > 0):
            raise DataError(f"dataset mixture entry {spec!r}: field 'weight' must be a positive number")
        return source


@dataclass
class DataReport:
    """Counts for the data card: nothing is dropped or cut without being counted here."""

    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    kept: int = 0
    truncated: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "sources": self.sources,
            "rows_used": sum(s["used"] for s in self.sources.values()),
            "kept": self.kept,
            "truncated": dict(self.truncated),
            "dropped": dict(self.dropped),
        }

    def summary(self) -> str:
        lines = [f"  {path}: read {s['read']}, used {s['used']}" for path, s in self.sources.items()]
        lines.append(f"  kept {self.kept}")
        lines += [f"  truncated ({why}): {n}" for why, n in self.truncated.items()]
        lines += [f"  dropped ({why}): {n}" for why, n in self.dropped.items()]
        return "\n".join(lines)


def read_jsonl_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """`("file:line", row)` for every non-blank line; a bad line raises `DataError` naming it."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{where}: not valid UTF-8 (byte {err.start} of the line)") from None
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object per line, got {type(row).__name__}")
            yield where, row


def _read_dataset(dataset, name: str) -> Iterator[tuple[str, dict]]:
    for i, row in enumerate(dataset):
        yield f"{name}[row {i}]", row


def read_rows(source: Source) -> Iterator[tuple[str, dict]]:
    """Yield `(location, row)` for every row of a JSONL file, Parquet file, saved dataset or hub dataset."""
    import datasets

    path = Path(source.path)
    if path.is_file() and path.suffix in {".jsonl", ".json"}:
        yield from read_jsonl_rows(path)
    elif path.is_file() and path.suffix == ".parquet":
        yield from _read_dataset(datasets.Dataset.from_parquet(str(path)), str(path))
    elif path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if source.split not in loaded:
                raise DataError(f"{path}: no split {source.split!r} (has {sorted(loaded)})")
            loaded = loaded[source.split]
        yield from _read_dataset(loaded, str(path))
    elif path.suffix in {".jsonl", ".json", ".parquet"} or path.is_absolute() or source.path.startswith("."):
        raise DataError(f"{source.path}: no such file or directory")
    else:  # a hub id; offline this fails with the hub's own message
        yield from _read_dataset(datasets.load_dataset(source.path, split=source.split), f"hub:{source.path}")


def sample_mixture(rows_by_source: dict[str, list], weights: dict[str, float], seed: int) -> dict[str, list]:
    """Scale each source by its weight: whole copies for the integer part, a seeded sample for the rest."""
    mixed = {}
    rng = random.Random(seed)
    for name, rows in rows_by_source.items():
        weight = weights[name]
        whole, fraction = int(math.floor(weight)), weight - math.floor(weight)
        picked = rows * whole
        extra = round(fraction * len(rows))
        if extra:
            picked += [rows[i] for i in sorted(rng.sample(range(len(rows)), extra))]
        mixed[name] = picked
    return mixed


def load_mixture(
    sources: list[Source], validate, report: DataReport, seed: int = 0
) -> list[tuple[str, object]]:
    """Read and validate every row of every source, then mix by weight.

    `validate(row, where)` returns the cleaned row or raises `DataError`; bad rows stop the run
    (they are never silently skipped). Returns `(location, cleaned_row)` pairs.
    """
    rows_by_source = {}
    for source in sources:
        rows_by_source[source.path] = [(where, validate(row, where)) for where, row in read_rows(source)]
        if not rows_by_source[source.path]:
            raise DataError(f"{source.path}: no rows")
    mixed = sample_mixture(rows_by_source, {s.path: s.weight for s in sources}, seed)
    for source in sources:
        report.sources[source.path] = {"read": len(rows_by_source[source.path]), "used": len(mixed[source.path])}
    return [pair for rows in mixed.values() for pair in rows]
