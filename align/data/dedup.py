"""Exact and near-duplicate rows within a training mixture.

Rows are compared on their normalised text (align.data.contamination.tokens: case, whitespace and punctuation
do not count), field by field. Exact duplicates have the same normalised text in every field. Near duplicates
are found with MinHash over 5-token shingles and locality-sensitive hashing (datasketch's `MinHashLSH`, bands
chosen for recall), then confirmed: the estimated Jaccard similarity of the two shingle sets must reach the
threshold too. The first row
of a group is kept, the later ones are dropped and counted under their own source.

Copies that the mixture makes on purpose (a source with weight 2) share an origin: they are not duplicates of
one another, and they follow their original (kept or dropped together).
"""

from __future__ import annotations

import hashlib
import zlib
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
from datasketch import MinHash, MinHashLSH

SHINGLE = 5
NUM_PERM = 128
POLYNOMIAL = 1_000_003
LSH_WEIGHTS = (0.1, 0.9)  # (false positive, false negative) weights for choosing bands and rows
SEPARATOR = "\x1e"  # between fields, in the exact key and in the shingled token stream


@dataclass
class Duplicates:
    """Which rows to keep, and what was dropped per source (`{"exact": n, "near": n}`)."""

    keep: list[int]
    dropped: dict[str, Counter] = field(default_factory=dict)
    dropped_rows: list[dict] = field(default_factory=list)  # {row, duplicate_of, kind, similarity}

    def count(self, kind: str) -> int:
        return sum(counts[kind] for counts in self.dropped.values())


class _TokenHash(dict):
    """token -> crc32, computed once per distinct token."""

    def __missing__(self, token: str) -> int:
        value = self[token] = zlib.crc32(token.encode())
        return value


_TOKEN_HASHES = _TokenHash()


def _shingle_hashes(fields: Sequence[tuple[str, ...]]) -> list[int]:
    """32-bit hashes of every run of SHINGLE tokens of the row's fields joined by a separator token (a shorter
    row is one shingle). Each distinct token is hashed once (crc32); a shingle's hash is a polynomial of its
    tokens' hashes, computed for all positions at once."""
    stream = [token for toks in fields for token in (*toks, SEPARATOR)][:-1]
    if not stream:
        return []
    token_hashes = np.array(list(map(_TOKEN_HASHES.__getitem__, stream)), dtype=np.uint64)
    width = min(SHINGLE, len(stream))
    combined = np.zeros(len(stream) - width + 1, dtype=np.uint64)
    for j in range(width):  # uint64 arithmetic wraps around: a hash, not a number
        combined = combined * np.uint64(POLYNOMIAL) + token_hashes[j:j + len(combined)]
    return (combined & np.uint64(0xFFFFFFFF)).tolist()


class Deduplicator:
    """Rows offered one at a time (`add`), in order; keeps signatures of the kept rows only, never their text."""

    def __init__(self, threshold: float | None, num_perm: int = NUM_PERM, seed: int = 1):
        self.threshold, self.num_perm, self.seed = threshold, num_perm, seed
        self.result = Duplicates(keep=[])
        self.seen_exact: dict[bytes, int] = {}
        self.fate: dict[Hashable, bool] = {}  # origin -> kept
        # LSH tuned for recall (datasketch's default balance finds only ~40% of pairs right at the threshold);
        # its extra candidates cost one comparison of signatures each.
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS) if threshold else None
        self.template = MinHash(num_perm=num_perm, seed=seed, hashfunc=int)
        self.signatures: dict[int, np.ndarray] = {}

    def add(self, row: int, segments: Sequence[tuple[str, tuple[str, ...]]], source: str,
            origin: Hashable = None) -> bool:
        """Whether row number `row` (its `(field, tokens)` segments) is kept; drops are counted under `source`.
        Rows sharing an `origin` (a mixture's weighted copies) follow the first one."""
        result = self.result
        origin = row if origin is None else origin
        if origin in self.fate:
            if self.fate[origin]:
                result.keep.append(row)
            else:
                result.dropped.setdefault(source, Counter())["copy of a dropped row"] += 1
                result.dropped_rows.append({"row": row, "duplicate_of": None, "kind": "copy of a dropped row"})
            return self.fate[origin]
        key = hashlib.blake2b(
            SEPARATOR.join(f"{name.split('[')[0]}:{' '.join(toks)}" for name, toks in segments).encode(),
            digest_size=16,
        ).digest()
        duplicate_of, kind, similarity = self.seen_exact.get(key), "exact", 1.0
        minhash = None
        if duplicate_of is None and self.lsh is not None:
            minhash = MinHash(num_perm=self.num_perm, seed=self.seed, hashfunc=int,
                              permutations=self.template.permutations, scheme=self.template.scheme)
            minhash.update_batch(_shingle_hashes([toks for _, toks in segments]))
            for candidate in self.lsh.query(minhash):
                estimate = float(np.mean(self.signatures[candidate] == minhash.hashvalues))
                if estimate >= self.threshold:
                    duplicate_of, kind, similarity = candidate, "near", estimate
                    break
        self.fate[origin] = kept = duplicate_of is None
        if not kept:
            result.dropped.setdefault(source, Counter())[kind] += 1
            result.dropped_rows.append({"row": row, "duplicate_of": duplicate_of, "kind": kind,
                                        "similarity": round(similarity, 3)})
            return False
        self.seen_exact[key] = row
        if minhash is not None:
            self.lsh.insert(row, minhash, check_duplication=False)
            self.signatures[row] = minhash.hashvalues
        result.keep.append(row)
        return True


def find_duplicates(
    rows: Sequence[Sequence[tuple[str, tuple[str, ...]]]],
    sources: Sequence[str],
    threshold: float | None,
    origins: Sequence[Hashable] | None = None,
    num_perm: int = NUM_PERM,
    seed: int = 1,
) -> Duplicates:
    """`rows[i]` is row i's `(field, tokens)` list. `threshold` None finds exact duplicates only; otherwise rows
    whose estimated Jaccard similarity (5-token shingles) is at least `threshold` are near duplicates."""
    deduplicator = Deduplicator(threshold, num_perm, seed)
    origins = origins if origins is not None else range(len(rows))
    for i, (segments, source, origin) in enumerate(zip(rows, sources, origins)):
        deduplicator.add(i, segments, source, origin)
    return deduplicator.result
