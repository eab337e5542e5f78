"""Where training rows come from: local JSONL (plain or gzipped), CSV, Parquet, `save_to_disk`
directories, or hub ids.

Every row travels with a location (`file.jsonl:12`, `dir[row 5]`) so that a validation error can
name the file, the line and the field. Weighted mixtures are sampled deterministically, and
`DataReport` counts what was read, used, truncated and dropped, and why. `read_mixture` returns the
validated rows as a `datasets.Dataset` with `source` and `location` columns, before any tokenisation.
"""

import csv
import gzip
import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .datasets_compat import content_fingerprint

# Names ending like this are files, never hub ids.
LOCAL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".csv", ".parquet", ".arrow", ".txt", ".tsv")
# How many locations of dropped rows the data card names per reason.
NAMED_DROPS = 20


class DataError(ValueError):
    """Bad input; the message names the location (file and line or row) and the field."""


class SkipRow(DataError):
    """Raised by a row validator for a row that the stages drop (counted and named) rather than stop at;
    a caller that does not catch it sees a `DataError` naming the row."""

    def __init__(self, reason: str, where: str):
        super().__init__(f"{where}: {reason}")
        self.reason, self.where = reason, where


def looks_local(name: str) -> bool:
    """Whether `name` means a local path rather than a hub id (`org/name`): it starts with `.`, `/`
    or `~`, has a backslash or more than one `/`, ends with a data-file suffix, or its first part is
    an existing local directory (so `data/prefs-v2` is local where `./data` exists)."""
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        return True
    if name.lower().endswith(LOCAL_SUFFIXES):
        return True
    return "/" in name and Path(name.split("/", 1)[0]).is_dir()


def check_local_path(name: str, field_name: str) -> None:
    """Fail at once, naming the field, when `name` looks local and does not exist (no hub call)."""
    if looks_local(name) and not Path(name).expanduser().exists():
        raise FileNotFoundError(
            f"{field_name} {name!r}: no such file or directory (it looks like a local path, so the Hub is not asked)"
        )


def in_local_cache(name: str, repo_type: str) -> bool:
    """Whether an earlier download of hub id `name` is on this machine (the hub's cache, or datasets' own)."""
    from huggingface_hub import try_to_load_from_cache

    marker = "config.json" if repo_type == "model" else "README.md"
    if isinstance(try_to_load_from_cache(name, marker, repo_type=repo_type), str):
        return True
    if repo_type == "dataset":
        from datasets import config

        return (Path(config.HF_DATASETS_CACHE) / name.replace("/", "___")).is_dir()
    return False


def from_hub(load, name: str, field_name: str, repo_type: str = "model"):
    """`load()` for a hub id (`org/name`) that is not a local path. One quick request first, so that a
    name the Hub does not have, or (for a model not in the local cache) a Hub that cannot be reached,
    fails in about a second instead of after the hub client's retries; any failure becomes one line
    that names the field and says that no local path has that name."""
    def not_found(reason: str) -> FileNotFoundError:
        return FileNotFoundError(
            f"{field_name} {name!r}: no local file or directory of that name, and the Hugging Face Hub did not "
            f"provide it ({reason})"
        )

    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import RepositoryNotFoundError

    if not constants.HF_HUB_OFFLINE:
        info = HfApi().model_info if repo_type == "model" else HfApi().dataset_info
        try:
            info(name, timeout=5)
        except RepositoryNotFoundError as error:
            raise not_found(f"no {repo_type} of that name there, or it is private") from error
        except Exception as error:  # noqa: BLE001  (network errors: the local cache may still hold it)
            if not in_local_cache(name, repo_type):
                raise not_found(f"not in the local cache, and the Hub could not be reached: {error}") from error
    try:
        return load()
    except OSError as error:
        raise not_found((str(error).strip().splitlines() or [type(error).__name__])[0]) from error


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
    dropped_rows: dict[str, list[str]] = field(default_factory=dict)  # reason -> first locations
    details: dict = field(default_factory=dict)  # e.g. how masks were derived, the eval set's report
    notes: list[str] = field(default_factory=list)  # how a source was read, where a reader had to decide it

    def drop(self, reason: str, *locations: str, count: int | None = None) -> None:
        """Count `count` dropped rows (default: one per location) and name the first locations."""
        self.dropped[reason] += len(locations) if count is None else count
        named = self.dropped_rows.setdefault(reason, [])
        named.extend(locations[: NAMED_DROPS - len(named)])

    def as_dict(self) -> dict:
        card = {
            "sources": self.sources,
            "rows_used": sum(s["used"] for s in self.sources.values()),
            "kept": self.kept,
            "truncated": dict(self.truncated),
            "dropped": dict(self.dropped),
        }
        if self.dropped_rows:
            card["dropped_rows"] = self.dropped_rows
        if self.notes:
            card["notes"] = self.notes
        return card | self.details

    def summary(self) -> str:
        lines = [f"  {path}: read {s['read']}, used {s['used']}" for path, s in self.sources.items()]
        lines.append(f"  kept {self.kept}")
        lines += [f"  truncated ({why}): {n}" for why, n in self.truncated.items()]
        for why, n in self.dropped.items():
            named = self.dropped_rows.get(why, [])
            more = f" (first: {', '.join(named[:3])})" if named else ""
            lines.append(f"  dropped ({why}): {n}{more}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _open_lines(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def read_jsonl_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """`("file:line", row)` for every non-blank line (gzipped when the name ends in .gz); a bad line
    raises `DataError` naming it."""
    with _open_lines(path) as f:
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


def read_csv_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """`("file:line", row)` per CSV record (header first; every cell is text, so only text formats
    fit: standard preference pairs, HH transcripts). The line is where the record starts."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        start = 2
        try:
            for row in reader:
                where = f"{path}:{start}"
                start = reader.line_num + 1
                if None in row or any(v is None for v in row.values()):
                    raise DataError(f"{where}: the record has a different number of cells than the header")
                yield where, {k: v for k, v in row.items()}
        except (csv.Error, UnicodeDecodeError) as err:
            raise DataError(f"{path}:{start}: not valid CSV ({err})") from None


def _read_dataset(dataset, name: str) -> Iterator[tuple[str, dict]]:
    for i, row in enumerate(dataset):
        yield f"{name}[row {i}]", row


def read_rows(source: Source) -> Iterator[tuple[str, dict]]:
    """Yield `(location, row)` for every row of a JSONL, CSV or Parquet file, saved dataset or hub dataset."""
    import datasets

    path = Path(source.path).expanduser()
    name = path.name.lower()
    if path.is_file() and name.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
        yield from read_jsonl_rows(path)
    elif path.is_file() and name.endswith(".csv"):
        yield from read_csv_rows(path)
    elif path.is_file() and name.endswith(".parquet"):
        yield from _read_dataset(datasets.Dataset.from_parquet(str(path)), str(path))
    elif path.is_file():
        raise DataError(f"{source.path}: unsupported file type (read: .jsonl, .json, .jsonl.gz, .csv, .parquet, "
                        "or a save_to_disk directory)")
    elif path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if source.split not in loaded:
                raise DataError(f"{path}: no split {source.split!r} (has {sorted(loaded)})")
            loaded = loaded[source.split]
        yield from _read_dataset(loaded, str(path))
    elif looks_local(source.path):
        raise DataError(f"{source.path}: no such file or directory (it looks like a local path, so the Hub is not asked)")
    else:  # a hub id
        loaded = from_hub(lambda: datasets.load_dataset(source.path, split=source.split), source.path, "dataset",
                          repo_type="dataset")
        yield from _read_dataset(loaded, f"hub:{source.path}")


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


def row_format(row: dict) -> dict[str, str]:
    """`{field: "text" | "messages" | type}`: rows of one dataset must agree on it (Arrow needs one type per column)."""
    return {k: "text" if isinstance(v, str) else "messages" if isinstance(v, list) else type(v).__name__
            for k, v in row.items()}


class _FormatCheck:
    """Remembers the first row's format and names the first row that differs from it."""

    def __init__(self):
        self.first = None

    def __call__(self, row: dict, where: str) -> None:
        shape = row_format(row)
        if self.first is None:
            self.first = (shape, where)
            return
        expected, first_where = self.first
        for key in sorted(set(shape) | set(expected)):
            if shape.get(key) != expected.get(key):
                raise DataError(
                    f"{where}: field '{key}' is {shape.get(key, 'absent')} but {first_where} has "
                    f"{expected.get(key, 'absent')}: every row of a dataset and of a mixture must use one format"
                )


def validated_rows(rows: Iterable[tuple[str, dict]], validate, report: DataReport) -> tuple[list[tuple[str, dict]], int]:
    """`(location, validate(row, location))` for each `(location, row)` of `rows`, and how many rows came: a row
    whose `validate` raises `SkipRow` is dropped, counted and named in `report`; a `DataError` stops the read."""
    kept, given = [], 0
    for where, row in rows:
        given += 1
        try:
            kept.append((where, validate(row, where)))
        except SkipRow as skip:
            report.drop(skip.reason, skip.where)
    return kept, given


def load_mixture(
    sources: list[Source], validate, report: DataReport, seed: int = 0, settle=None,
) -> list[tuple[str, str, dict]]:
    """Read and validate every row of every source, then mix by weight.

    `validate(row, where)` returns the cleaned row (a dict) or raises `DataError` (the run stops:
    bad rows are never silently skipped) or `SkipRow` (the row is dropped, counted and named).
    `settle(source, rows)`, if given, receives a source's `(location, cleaned_row)` pairs once the whole
    source is read and returns the ones to keep (what it drops, it counts in `report`): for what only the
    whole file can tell, such as whether its text pairs are HH transcripts.
    Returns `(source path, location, cleaned_row)` triples; all rows share one format.
    """
    rows_by_source = {}
    same_format = _FormatCheck()
    for source in sources:
        rows, read = validated_rows(read_rows(source), validate, report)
        if settle is not None:
            rows = settle(source, rows)
        for where, cleaned in rows:
            same_format(cleaned, where)
        if not rows:
            raise DataError(f"{source.path}: no rows" + (f" ({read} read, all dropped)" if read else ""))
        rows_by_source[source.path] = (read, [(source.path, where, cleaned) for where, cleaned in rows])
    mixed = sample_mixture({k: rows for k, (_, rows) in rows_by_source.items()},
                           {s.path: s.weight for s in sources}, seed)
    for source in sources:
        report.sources[source.path] = {"read": rows_by_source[source.path][0], "used": len(mixed[source.path])}
    return [triple for rows in mixed.values() for triple in rows]


# Bump when tokenising or masking changes what a cached file holds.
CACHE_VERSION = 1


def fingerprint(rows, tokenizer, *settings) -> str:
    """A `datasets` fingerprint for a transform of `rows` (their content fingerprint) by `tokenizer`
    (its path, size and special tokens) under `settings`, instead of datasets hashing the tokenizer
    object itself (~25 s for Qwen's vocabulary)."""
    key = repr((CACHE_VERSION, content_fingerprint(rows), tokenizer.name_or_path, len(tokenizer),
                tokenizer.all_special_tokens, *settings))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def cache_file(kind: str, key: str) -> str:
    """Where `datasets.map` keeps a tokenised set (datasets' cache directory, never output_dir): a re-run
    on the same rows, tokenizer and settings loads it instead of tokenising again."""
    import datasets

    folder = Path(datasets.config.HF_DATASETS_CACHE) / "klear_align"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{kind}-{key}.arrow")


def read_mixture(sources: list[Source], validate, report: DataReport, seed: int = 0, settle=None):
    """`load_mixture` as a `datasets.Dataset`: the cleaned rows' fields plus `source` (the path it
    came from) and `location` (`file:line`), in mixture order. Nothing is tokenised yet."""
    from datasets import Dataset

    triples = load_mixture(sources, validate, report, seed=seed, settle=settle)
    columns = {key: [row[key] for _, _, row in triples] for key in triples[0][2]}
    columns["source"] = [path for path, _, _ in triples]
    columns["location"] = [where for _, where, _ in triples]
    return Dataset.from_dict(columns)
