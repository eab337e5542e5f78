"""Strict parsers for judge outputs. A judgment either yields an in-range score in the format the
prompt asked for, or raises `JudgmentParseError` with the reason; it is never scored -1 or 0.

Where FastChat and THUDM are lenient, these are not, on purpose:
- MT-Bench: FastChat falls back to `[8]` when `[[8]]` is missing, so a citation like `[1]` becomes a
  rating of 1; `[[15]]` is taken as 15. Here only `[[x]]` with 1 <= x <= 10 counts, and two
  different `[[x]]` in one judgment are ambiguous.
- Pairwise: FastChat takes "[[A]]" whenever it appears, even when the judge also wrote "[[B]]".
- AlignBench: THUDM reads only `'key': integer` inside a one-line dict, so `"综合得分": 7` or
  `'综合得分': 7.5` loses dimensions or the score. Here single, double or curly quotes and decimals
  parse; every score must lie in 1..10.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .benchmarks import ALIGNBENCH_OVERALL_KEY

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
    """The `[[rating]]` of a single-answer MT-Bench judgment (single-v1, single-math-v1, multi-turn)."""
    values = {float(match) for match in _DOUBLE_BRACKET_RATING.findall(judgment)}
    if not values:
        hints = []
        if _BARE_RATING.search(judgment):
            hints.append(f"found {_BARE_RATING.search(judgment).group(0)!r} without the double brackets")
        if _SINGLE_BRACKET_NUMBER.search(judgment):
            hints.append(f"found {_SINGLE_BRACKET_NUMBER.search(judgment).group(0)!r} (single brackets: a citation?)")
        detail = f" ({'; '.join(hints)})" if hints else ""
        raise JudgmentParseError(f"no [[rating]] in the judgment{detail}")
    if len(values) > 1:
        shown = ", ".join(f"[[{value:g}]]" for value in sorted(values))
        raise JudgmentParseError(f"ambiguous: several different ratings {shown}")
    return _in_range(values.pop(), "rating")


def parse_pair_verdict(judgment: str) -> str:
    """"A", "B" or "tie" from a pairwise judgment's [[A]] / [[B]] / [[C]] (pair-v2, pair-math-v1)."""
    verdicts = set(_PAIR_VERDICT.findall(judgment))
    if not verdicts:
        raise JudgmentParseError("no [[A]], [[B]] or [[C]] verdict in the judgment")
    if len(verdicts) > 1:
        shown = ", ".join(f"[[{verdict}]]" for verdict in sorted(verdicts))
        raise JudgmentParseError(f"ambiguous: several verdicts {shown}")
    return {"A": "A", "B": "B", "C": "tie"}[verdicts.pop()]


@dataclass(frozen=True)
class AlignBenchRating:
    overall: float
    dimensions: dict[str, float]  # every key of the judge's dict except the overall score
    missing_dimensions: tuple[str, ...]  # expected dimensions the judge did not score


def parse_alignbench_rating(judgment: str, expected_dimensions: list[str] | tuple[str, ...] = ()) -> AlignBenchRating:
    """The score dict at the end of an AlignBench judgment, e.g. {'事实正确性': 9, ..., '综合得分': 7}."""
    blocks = [block for block in _BRACE_BLOCK.findall(judgment) if ALIGNBENCH_OVERALL_KEY in block]
    if not blocks:
        raise JudgmentParseError(f"no score dict with {ALIGNBENCH_OVERALL_KEY!r} in the judgment")
    pairs = _KEY_VALUE.findall(blocks[-1])
    scores: dict[str, float] = {}
    for key, value in pairs:
        scores[key.strip()] = _in_range(float(value), f"score of {key.strip()!r}")
    if ALIGNBENCH_OVERALL_KEY not in scores:
        raise JudgmentParseError(f"{ALIGNBENCH_OVERALL_KEY!r} has no numeric score in {blocks[-1]!r}")
    overall = scores.pop(ALIGNBENCH_OVERALL_KEY)
    missing = tuple(dimension for dimension in expected_dimensions if dimension not in scores)
    return AlignBenchRating(overall=overall, dimensions=scores, missing_dimensions=missing)
