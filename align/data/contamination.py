"""Benchmark contamination: training rows whose text overlaps an evaluation set's questions or reference answers.

    python -m align.data.contamination data/train.jsonl --against mt_bench --against alignbench \\
        --alignbench-dir ../shared/data/alignbench --against my_eval.jsonl --report contamination.json

INPUT is anything the stages read: chat or preference JSONL, Parquet, a `save_to_disk` directory, or a
recipe YAML (its `dataset_mixture` or `dataset_name`). Exit status 0 whether rows are flagged or not.

How a benchmark text (a question turn or a reference answer) is matched (docs/data.md says why):

- Text is normalised: Unicode NFKC (full-width letters, digits and punctuation become ASCII), case-folded,
  punctuation and whitespace dropped. Tokens are words for alphabetic text and single characters for CJK.
- A text of at least `n` tokens (13 words, or 13 CJK characters when the text is mostly CJK) matches a row
  when the row's n-grams cover at least half of the text's tokens. N-grams never span two messages.
- Shorter questions match when their whole token sequence occurs inside a message (embedded is fine) and they
  have at least `min_tokens` tokens (4 words / 6 CJK characters); still shorter ones, and short reference
  answers, only when they are the whole message.
- MT-Bench's follow-up turns shorter than `n` ("Take a moment to evaluate and critique your own response.")
  mean something only after their first turn: they count only when the same row also matches that first turn.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .benchmarks import MT_BENCH_DIR, load_alignbench, load_mt_bench
from .sources import DataError, Source, read_jsonl_rows, read_rows

# Han (with extensions A and compatibility ideographs), kana, Hangul syllables: one token per character.
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
# Emoji and pictographs are content too (AlignBench asks about "🌾🌾👦👀🌾"): one token each.
EMOJI = "\u2600-\u27bf\U0001f000-\U0001faff"
TOKEN = re.compile(f"[{CJK}{EMOJI}]|[^\\W_{CJK}]+")
HAS_CJK = re.compile(f"[{CJK}]")

WORD_N, CJK_N = 13, 13
WORD_MIN, CJK_MIN = 4, 6
COVERAGE = 0.5
BATCH = 1000  # rows per vectorised pre-filter pass
BITMAP_BITS = 26  # 8 MiB per window size; ~0.3% of non-matching windows pass it to the exact check
# Row fields that hold conversation text; others (source, annotators, scores) are provenance.
TEXT_FIELDS = ("messages", "prompt", "chosen", "rejected", "completion", "text", "conversations")


def tokens(text: str) -> tuple[str, ...]:
    """Normalised tokens: NFKC, case-folded, punctuation and whitespace gone, CJK split into characters."""
    return tuple(TOKEN.findall(unicodedata.normalize("NFKC", text).casefold()))


def is_cjk(toks: tuple[str, ...]) -> bool:
    """Mostly CJK: at least half of the tokens are single CJK characters."""
    return sum(1 for t in toks if len(t) == 1 and HAS_CJK.match(t)) * 2 >= len(toks) > 0


@dataclass(frozen=True)
class EvalText:
    """One text of an evaluation set: a question turn or a reference answer."""

    benchmark: str
    question_id: str
    part: str  # "question turn 1", "reference turn 2", "question", "reference"
    text: str
    is_reference: bool = False
    followup: bool = False  # a later turn that needs its first turn as context


def mt_bench_texts(data_dir: str | Path | None = None) -> list[EvalText]:
    bench = load_mt_bench(data_dir or MT_BENCH_DIR)
    texts = []
    for question in bench.questions:
        qid = str(question["question_id"])
        for turn, text in enumerate(question["turns"]):
            texts.append(EvalText("mt_bench", qid, f"question turn {turn + 1}", text, followup=turn > 0))
        for turn, text in enumerate(bench.references.get(question["question_id"], [])):
            texts.append(EvalText("mt_bench", qid, f"reference turn {turn + 1}", text, is_reference=True))
    return texts


def alignbench_texts(directory: str | Path | None = None) -> list[EvalText]:
    texts = []
    for question in load_alignbench(directory).questions:
        qid = str(question["question_id"])
        texts.append(EvalText("alignbench", qid, "question", question["question"]))
        if question.get("reference"):
            texts.append(EvalText("alignbench", qid, "reference", question["reference"], is_reference=True))
    return texts


def file_texts(path: str | Path) -> list[EvalText]:
    """A generic evaluation set, one JSON object per line, named after the file's stem.

    Question: `turns` (list of strings, FastChat's format), `question` or `prompt` (a string, or chat messages
    whose user turns are the questions). Reference (optional): `reference` (string or list of strings) or
    `answer`. Id: `question_id`, else `id`, else the line number.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: evaluation file not found")
    name, texts = path.stem, []
    for where, row in read_jsonl_rows(path):
        qid = str(row.get("question_id", row.get("id", where.rsplit(":", 1)[1])))
        questions = _strings(row, ("turns", "question", "prompt"), where, user_only=True)
        if not questions:
            raise DataError(f"{where}: no question: expected a field 'turns', 'question' or 'prompt'")
        for turn, text in enumerate(questions):
            texts.append(EvalText(name, qid, f"question turn {turn + 1}", text, followup=turn > 0))
        for turn, text in enumerate(_strings(row, ("reference", "answer"), where)):
            texts.append(EvalText(name, qid, f"reference turn {turn + 1}", text, is_reference=True))
    return texts


def _strings(row: dict, fields: tuple[str, ...], where: str, user_only: bool = False) -> list[str]:
    for name in fields:
        value = row.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        if isinstance(value, list) and all(isinstance(v, dict) and isinstance(v.get("content"), str) for v in value):
            return [v["content"] for v in value if not user_only or v.get("role") == "user"]
        raise DataError(f"{where}: field {name!r} must be a string, a list of strings or a list of chat messages")
    return []


def load_eval_texts(against: Iterable[str], alignbench_dir: str | Path | None = None) -> list[EvalText]:
    """`mt_bench`, `alignbench` or a JSONL file per entry."""
    texts = []
    for name in against:
        if name == "mt_bench":
            texts += mt_bench_texts()
        elif name == "alignbench":
            texts += alignbench_texts(alignbench_dir)
        elif name.endswith((".jsonl", ".json")):
            texts += file_texts(name)
        else:
            raise DataError(f"unknown evaluation set {name!r}: expected mt_bench, alignbench or a .jsonl file")
    return texts


def row_segments(row: dict) -> list[tuple[str, str]]:
    """`(field, text)` for every piece of conversation text in a row, in any of the formats the stages read
    (messages, prompt/chosen/rejected as text or messages, raw transcripts)."""
    segments = []
    for name in TEXT_FIELDS:
        value = row.get(name)
        if isinstance(value, str):
            segments.append((name, value))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, str):
                    segments.append((f"{name}[{i}]", item))
                elif isinstance(item, dict):
                    text = item.get("content", item.get("value"))
                    if isinstance(text, str):
                        segments.append((f"{name}[{i}]", text))
    return segments


@dataclass
class Flag:
    benchmark: str
    question_id: str
    part: str  # the best-covered text; `parts` lists every matched one
    field: str
    coverage: float
    evidence: str
    parts: list[str] = field(default_factory=list)


def _ngrams(toks: tuple[str, ...], n: int) -> Iterator[tuple[str, ...]]:
    return zip(*(toks[i:] for i in range(n)))


@dataclass
class ContaminationIndex:
    """N-gram, embedded-phrase and whole-message lookups over evaluation texts; `scan` checks one row."""

    texts: list[EvalText]
    coverage: float = COVERAGE
    entries: list[tuple[EvalText, tuple[str, ...]]] = field(default_factory=list)
    ngrams: dict[int, dict[tuple, list[tuple[int, int]]]] = field(default_factory=dict)  # n -> gram -> (entry, pos)
    prefixes: dict[int, dict[tuple, list[int]]] = field(default_factory=dict)  # k -> first k tokens -> entries
    whole: dict[tuple, list[int]] = field(default_factory=dict)  # full token sequence -> entries
    unchecked: Counter = field(default_factory=Counter)  # benchmark -> texts too short to check
    first_turns: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    coverable: dict[int, int] = field(default_factory=dict)  # entry -> positions its evidential n-grams span

    def __post_init__(self):
        for text in self.texts:
            toks = tokens(text.text)
            cjk = is_cjk(toks)
            n, min_tokens = (CJK_N, CJK_MIN) if cjk else (WORD_N, WORD_MIN)
            index = len(self.entries)
            if len(toks) >= n:
                grams = self.ngrams.setdefault(n, {})
                for pos, gram in enumerate(_ngrams(toks, n)):
                    grams.setdefault(gram, []).append((index, pos))
            elif len(toks) >= min_tokens and not text.is_reference:
                self.prefixes.setdefault(min_tokens, {}).setdefault(toks[:min_tokens], []).append(index)
            elif toks and (len(toks) >= min_tokens or not text.is_reference):
                self.whole.setdefault(toks, []).append(index)
            else:
                self.unchecked[text.benchmark] += 1
                continue
            self.entries.append((text, toks))
            if text.part == "question turn 1":
                self.first_turns.setdefault((text.benchmark, text.question_id), []).append(index)
        self._drop_template_ngrams()
        self.gram_keys = {n: frozenset(grams) for n, grams in self.ngrams.items()}
        self.prefix_keys = {k: frozenset(p) for k, p in self.prefixes.items()}
        # A numpy pre-filter over many rows at once (`scan_many`): token ids, and the sorted hashes of every
        # n-gram and prefix; a segment with no hash hit cannot match anything but a whole message.
        self.vocab = _Vocabulary((t, i + 1) for i, t in enumerate({t for _, toks in self.entries for t in toks}))
        self.window_hashes, self.window_bits = {}, {}
        for size, keys in [*self.gram_keys.items(), *self.prefix_keys.items()]:
            ids = np.array([list(map(self.vocab.__getitem__, key)) for key in keys], dtype=np.uint64).reshape(-1, size)
            known = self.window_hashes.get(size, np.empty(0, dtype=np.uint64))
            self.window_hashes[size] = np.unique(np.concatenate([known, _rolling_hash(ids.T, size)[0][0]]))
            bits = np.zeros(1 << (BITMAP_BITS - 3), dtype=np.uint8)
            slots = _bitmap_slots(self.window_hashes[size])
            np.bitwise_or.at(bits, slots >> np.uint64(3), (np.uint8(1) << (slots & np.uint64(7)).astype(np.uint8)))
            self.window_bits[size] = bits

    def _drop_template_ngrams(self) -> None:
        """N-grams found in several questions of one benchmark are its instructions ("下面是一道多选题，它包含多个
        正确选项..."), not any question's content: they are no evidence, and coverage is measured over the
        positions the remaining n-grams span. A text made only of such n-grams (a duplicated question) keeps them
        all."""
        for n, grams in self.ngrams.items():
            usable: dict[int, int] = Counter()
            shared = set()
            for gram, hits in grams.items():
                owners = {(self.entries[i][0].benchmark, self.entries[i][0].question_id) for i, _ in hits}
                if len({benchmark for benchmark, _ in owners}) < len(owners):
                    shared.add(gram)
                else:
                    usable.update(i for i, _ in hits)
            for gram in shared:
                kept = [(i, pos) for i, pos in grams[gram] if not usable[i]]
                if kept:
                    grams[gram] = kept
                else:
                    del grams[gram]
            spans: dict[int, set[int]] = defaultdict(set)
            for hits in grams.values():
                for i, pos in hits:
                    spans[i].update(range(pos, pos + n))
            self.coverable.update((i, len(positions)) for i, positions in spans.items())

    def scan(self, segments: list[tuple[str, str]]) -> list[Flag]:
        """The evaluation questions a row's `(field, text)` segments match, one `Flag` per (benchmark, question id)."""
        return self.scan_tokens([(name, tokens(text)) for name, text in segments])

    def scan_many(self, rows: list[list[tuple[str, tuple[str, ...]]]]) -> list[list[Flag]]:
        """`scan_tokens` for many rows: one vectorised hash pass finds the segments worth a closer look."""
        flat = [toks for segments in rows for _, toks in segments]
        owner = [(row, number) for row, segments in enumerate(rows) for number in range(len(segments))]
        candidates: dict[int, set[int]] = defaultdict(set)
        for i in self._segments_with_hits(flat):
            candidates[owner[i][0]].add(owner[i][1])
        return [self.scan_tokens(segments, candidates.get(row, set())) for row, segments in enumerate(rows)]

    def _segments_with_hits(self, segments: list[tuple[str, ...]]) -> set[int]:
        lengths = np.fromiter((len(t) for t in segments), dtype=np.int64, count=len(segments))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(segments) else lengths
        ids = np.array(list(map(self.vocab.__getitem__, (t for toks in segments for t in toks))), dtype=np.uint64)
        hit = set()
        for size, known in self.window_hashes.items():
            hashes, positions = _rolling_hash(ids, size)
            if not len(hashes) or not len(known):
                continue
            # a bitmap first (one memory read per window), the sorted hashes for what passes it
            slots = _bitmap_slots(hashes)
            maybe = (self.window_bits[size][slots >> np.uint64(3)] >> (slots & np.uint64(7)).astype(np.uint8)) & 1
            hashes, positions = hashes[maybe == 1], positions[maybe == 1]
            found = known[np.minimum(np.searchsorted(known, hashes), len(known) - 1)] == hashes
            hit.update(np.unique(np.searchsorted(starts, positions[found], side="right") - 1).tolist())
        return hit

    def scan_tokens(self, segments: list[tuple[str, tuple[str, ...]]], candidates: set[int] | None = None) -> list[Flag]:
        """`scan` for segments already normalised with `tokens`. With `candidates` (from the hash pre-filter),
        the other segments are only compared as whole messages."""
        covered: dict[int, set[int]] = defaultdict(set)
        found_in: dict[int, str] = {}
        matched: set[int] = set()
        for number, (name, toks) in enumerate(segments):
            for index in self.whole.get(toks, ()):
                matched.add(index)
                found_in.setdefault(index, name)
            if candidates is not None and number not in candidates:
                continue
            for n, keys in self.gram_keys.items():
                for gram in keys.intersection(_ngrams(toks, n)):
                    for index, pos in self.ngrams[n][gram]:
                        covered[index].update(range(pos, pos + n))
                        found_in.setdefault(index, name)
            for k, keys in self.prefix_keys.items():
                for prefix in keys.intersection(_ngrams(toks, k)):
                    for index in self.prefixes[k][prefix]:
                        if _contains(toks, self.entries[index][1]):
                            matched.add(index)
                            found_in.setdefault(index, name)
        for index, positions in covered.items():
            if len(positions) >= self.coverage * self.coverable[index]:
                matched.add(index)
        flags: dict[tuple[str, str], Flag] = {}
        for index in sorted(matched):
            text, toks = self.entries[index]
            key = (text.benchmark, text.question_id)
            if text.followup and len(toks) < (CJK_N if is_cjk(toks) else WORD_N):
                if not any(i in matched for i in self.first_turns.get(key, ())):
                    continue
            share = len(covered[index]) / self.coverable[index] if index in covered else 1.0
            parts = flags[key].parts if key in flags else []
            if key not in flags or share > flags[key].coverage:
                span = _longest_run(covered[index]) if index in covered else range(len(toks))
                flags[key] = Flag(text.benchmark, text.question_id, text.part, found_in[index], round(share, 3),
                                  _join(toks[span.start:span.stop]), parts)
            parts.append(text.part)
        return list(flags.values())


class _Vocabulary(dict):
    """Benchmark token -> id from 1; any other token is 0 (so no window holding it equals a benchmark n-gram)."""

    def __missing__(self, token: str) -> int:
        return 0


def _rolling_hash(ids: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Polynomial hashes (uint64, wrapping) of every window of `size` ids along the first axis, and the windows'
    start positions. Equal windows hash equally; the pre-filter's rare collisions are settled by exact lookup."""
    count = ids.shape[0] - size + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    acc = np.zeros((count, *ids.shape[1:]), dtype=np.uint64)
    for j in range(size):
        acc = acc * np.uint64(1_000_003) + ids[j:j + count]
    return acc, np.arange(count)


def _bitmap_slots(hashes: np.ndarray) -> np.ndarray:
    """Fibonacci hashing of 64-bit hashes onto BITMAP_BITS-bit slots."""
    return (hashes * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - BITMAP_BITS)


def _contains(haystack: tuple, needle: tuple) -> bool:
    first, size = needle[0], len(needle)
    return any(haystack[i:i + size] == needle for i, tok in enumerate(haystack) if tok == first)


def _longest_run(positions: set[int]) -> range:
    best, start, previous = range(0), None, None
    for pos in sorted(positions):
        if previous is None or pos != previous + 1:
            start = pos
        previous = pos
        if pos + 1 - start > len(best):
            best = range(start, pos + 1)
    return best


def _join(toks: tuple[str, ...], limit: int = 300) -> str:
    text = "".join(t if len(t) == 1 and HAS_CJK.match(t) else f" {t} " for t in toks)
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[:limit] + " ..."


def scan_rows(index: ContaminationIndex, rows: Iterable[dict]) -> tuple[int, list[dict]]:
    """`(rows read, flagged entries)`, each entry `{row, benchmark, question_id, evidence, part, field, coverage}`."""
    flagged, count, batch = [], 0, []

    def scan_batch():
        tokenised = [[(name, tokens(text)) for name, text in row_segments(row)] for row in batch]
        for offset, flags in enumerate(index.scan_many(tokenised)):
            flagged.extend({"row": count - len(batch) + offset, **_flag_dict(flag)} for flag in flags)
        batch.clear()

    for count, row in enumerate(rows, start=1):
        batch.append(row)
        if len(batch) == BATCH:
            scan_batch()
    scan_batch()
    return count, flagged


def _flag_dict(flag: Flag) -> dict:
    return {"benchmark": flag.benchmark, "question_id": flag.question_id, "evidence": flag.evidence,
            "part": flag.part, "parts": flag.parts, "field": flag.field, "coverage": flag.coverage}


def summarise(flagged: list[dict], benchmarks: Iterable[str]) -> dict[str, dict[str, int]]:
    """Per benchmark: rows flagged and distinct questions hit."""
    summary = {name: {"rows_flagged": 0, "questions_hit": 0} for name in benchmarks}
    rows, questions = defaultdict(set), defaultdict(set)
    for entry in flagged:
        rows[entry["benchmark"]].add(entry["row"])
        questions[entry["benchmark"]].add(entry["question_id"])
    for name in summary:
        summary[name] = {"rows_flagged": len(rows[name]), "questions_hit": len(questions[name])}
    return summary


def input_sources(path: str) -> list[Source]:
    """A data file or directory, or a recipe YAML whose dataset_mixture / dataset_name says where the data is."""
    if not path.endswith((".yaml", ".yml")):
        return [Source(path)]
    import yaml

    if not Path(path).is_file():
        raise DataError(f"{path}: no such recipe")
    recipe = yaml.safe_load(Path(path).read_text()) or {}
    mixture = recipe.get("dataset_mixture")
    if isinstance(mixture, str):
        mixture = json.loads(mixture)
    if mixture:
        return [Source.parse(entry) for entry in mixture]
    if recipe.get("dataset_name"):
        return [Source(recipe["dataset_name"])]
    raise DataError(f"{path}: the recipe has neither dataset_mixture nor dataset_name")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m align.data.contamination", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="chat/preference JSONL, Parquet, a save_to_disk directory, or a recipe YAML")
    parser.add_argument("--against", action="append", required=True,
                        help="mt_bench, alignbench, or an evaluation JSONL file (repeatable)")
    parser.add_argument("--alignbench-dir", help="AlignBench's directory (default: $ALIGNBENCH_DIR or ../shared/data)")
    parser.add_argument("--report", required=True, help="where to write the JSON report")
    args = parser.parse_args(argv)
    if Path(args.report).is_dir():
        print(f"error: --report {args.report} is a directory; name the JSON file to write", file=sys.stderr)
        return 2
    try:
        index = ContaminationIndex(load_eval_texts(args.against, args.alignbench_dir))
        sources = input_sources(args.input)
        locations: list[str] = []

        def rows() -> Iterator[dict]:
            for source in sources:
                for where, row in read_rows(source):
                    locations.append(where)
                    yield row

        count, flagged = scan_rows(index, rows())
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if count == 0:  # "0 rows flagged" would read as clean
        print(f"error: no rows were read from {args.input}: nothing was checked (no report written)", file=sys.stderr)
        return 2
    for entry in flagged:
        entry["location"] = locations[entry["row"]]
    benchmarks = list(dict.fromkeys(text.benchmark for text in index.texts))
    summary = summarise(flagged, benchmarks)
    report = {"input": args.input, "rows": count, "checked_against": benchmarks, "summary": summary,
              "unchecked_short_texts": dict(index.unchecked), "flagged": flagged}
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"{args.input}: {count} rows checked")
    for name, figures in summary.items():
        print(f"  {name}: {figures['rows_flagged']} rows flagged ({figures['questions_hit']} questions)")
    print(f"report: {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
