"""Parsers for judge outputs. A judgment either yields an in-range score in the format the prompt
asked for, or raises `JudgmentParseError` with the reason; it is never scored -1 or 0.

Where these read a judgment as FastChat and THUDM do, and where they differ on purpose:
- MT-Bench: the first `[[x]]` is the rating, as FastChat's `re.search` takes it (real judgments
  name a hypothetical after the rating: "Rating: [[9]] ... with examples it would earn [[10]]").
  Different from FastChat: FastChat falls back to `[8]` when no `[[8]]` is there, so a citation or a
  code index like `[1]` becomes a rating of 1; here that is a failure. FastChat takes `[[15]]` (or
  `[[70]]` from a judge that answered on another scale); here a first rating outside 1..10 is a
  failure (the next `[[x]]` is not tried: the judge's rating was that one).
- Pairwise: the first `[[A]]` / `[[B]]` / `[[C]]` is the verdict. Different from FastChat, which
  answers "A" whenever "[[A]]" appears anywhere, then "B", then "C" (so "[[B]] ... unlike [[A]]" is
  A for FastChat and B here).
- AlignBench: THUDM reads only `'key': integer` inside a one-line dict, so `"综合得分": 7` or
  `'综合得分': 7.5` loses dimensions or the score. Here single, double or curly quotes and decimals
  parse. `综合得分` must lie in 1..10; a dimension score outside 1..10 does not reject a valid
  overall score: it is left out of the dimension means and recorded (`odd_dimensions`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from align.data.benchmarks import ALIGNBENCH_OVERALL_KEY

SCORE_MIN, SCORE_MAX = 1.0, 10.0

_DOUBLE_BRACKET_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_SINGLE_BRACKET_NUMBER = re.compile(r"(?<!\[)\[\s*\d+(?:\.\d+)?\s*\](?!\])")
_BARE_RATING = re.compile(r"rating\s*[:：]\s*\d+(?:\.\d+)?", re.IGNORECASE)
_PAIR_VERDICT = re.compile(r"\[\[([ABC])\]\]")
_BRACE_BLOCK = re.compile(r"\{[^{}]*\}")
_KEY_VALUE = re.compile(r"""["'‘“]?([^"'‘’“”:：,，{}\n]+?)["'’”]?\s*[:：]\s*(-?\d+(?:\.\d+)?)""")


class JudgmentParseError(ValueError):
    """The judgment holds no valid score in the expected format; the message says why."""


def _in_range(value: float, what: str) -> float:
    if not SCORE_MIN <= value <= SCORE_MAX:
        raise JudgmentParseError(f"{what} {value:g} is outside {SCORE_MIN:g}..{SCORE_MAX:g}")
    return value


def parse_mt_bench_rating(judgment: str) -> float:
    """The first `[[rating]]` of a single-answer MT-Bench judgment (single-v1, single-math-v1, multi-turn)."""
    first = _DOUBLE_BRACKET_RATING.search(judgment)
    if first is None:
        hints = []
        if bare := _BARE_RATING.search(judgment):
            hints.append(f"found {bare.group(0)!r} without the double brackets")
        if single := _SINGLE_BRACKET_NUMBER.search(judgment):
            hints.append(f"found {single.group(0)!r} (single brackets: a citation or an index?)")
        detail = f" ({'; '.join(hints)})" if hints else ""
        raise JudgmentParseError(f"no [[rating]] in the judgment{detail}")
    return _in_range(float(first.group(1)), "rating")


def parse_pair_verdict(judgment: str) -> str:
    """"A", "B" or "tie" from the first [[A]] / [[B]] / [[C]] of a pairwise judgment (pair-v2, pair-math-v1)."""
    first = _PAIR_VERDICT.search(judgment)
    if first is None:
        raise JudgmentParseError("no [[A]], [[B]] or [[C]] verdict in the judgment")
    return {"A": "A", "B": "B", "C": "tie"}[first.group(1)]


@dataclass(frozen=True)
class AlignBenchRating:
    overall: float
    dimensions: dict[str, float]  # every in-range key of the judge's dict except the overall score
    missing_dimensions: tuple[str, ...]  # expected dimensions the judge did not score
    odd_dimensions: dict[str, float] = field(default_factory=dict)  # scores outside 1..10, left out


def parse_alignbench_rating(judgment: str, expected_dimensions: list[str] | tuple[str, ...] = ()) -> AlignBenchRating:
    """The score dict at the end of an AlignBench judgment, e.g. {'事实正确性': 9, ..., '综合得分': 7}."""
    blocks = [block for block in _BRACE_BLOCK.findall(judgment) if ALIGNBENCH_OVERALL_KEY in block]
    if not blocks:
        raise JudgmentParseError(f"no score dict with {ALIGNBENCH_OVERALL_KEY!r} in the judgment")
    scores = {key.strip(): float(value) for key, value in _KEY_VALUE.findall(blocks[-1])}
    if ALIGNBENCH_OVERALL_KEY not in scores:
        raise JudgmentParseError(f"{ALIGNBENCH_OVERALL_KEY!r} has no numeric score in {blocks[-1]!r}")
    overall = _in_range(scores.pop(ALIGNBENCH_OVERALL_KEY), f"score of {ALIGNBENCH_OVERALL_KEY!r}")
    dimensions = {key: value for key, value in scores.items() if SCORE_MIN <= value <= SCORE_MAX}
    odd = {key: value for key, value in scores.items() if key not in dimensions}
    missing = tuple(dimension for dimension in expected_dimensions if dimension not in scores)
    return AlignBenchRating(overall=overall, dimensions=dimensions, missing_dimensions=missing, odd_dimensions=odd)
