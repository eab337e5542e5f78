"""The figures FastChat's and THUDM's own scripts would print for the same judgments.

Ours exclude failures, retry unparseable judgments and take the median of an item's repeats.
The originals do not, so their numbers can differ from ours; the report states theirs beside
ours, with the reason, whenever the two could differ. These functions restate the originals'
rules (read from lm-sys/FastChat@0e6d3e4 `llm_judge/common.py` + `show_result.py`, and
THUDM/AlignBench@5b79d4a `judge.py` + `show_result.py`); tests/judging/test_upstream.py checks
them against outputs recorded by running that code (tests/judging/golden/).

- FastChat single: the rating is the first `[[x]]`, else the first `[x]`, else -1; no retry.
  show_result drops -1 and averages every row, so repeated or duplicate rows of an item all count.
- FastChat pairwise: "[[A]]" anywhere -> A, else "[[B]]" -> B, else "[[C]]" -> tie, else error.
  show_result drops a match with an error in either game; a tie in either game or a disagreement
  is a tie; win_rate_adjusted = (win + tie / 2) / matches.
- THUDM AlignBench: `'key': integer` pairs of the last {...}; 综合得分 from it, else from
  `'综合得分': x` anywhere, else -1. show_result averages every row, -1 included, per category;
  reasoning/language are means of category means, overall their mean.

A row's "first answer" is what the judge said first (its first failed attempt, if any): the
originals make one call per judgment.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict

import numpy as np

from align.data.benchmarks import ALIGNBENCH_LANGUAGE, ALIGNBENCH_OVERALL_KEY, ALIGNBENCH_REASONING

_FASTCHAT_ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_FASTCHAT_ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
_THUDM_LAST_DICT = re.compile(r"{(.*?)}(?![^{]*{)")
_THUDM_KEY_VALUE = re.compile(r"'(.*?)': (\d+)")
_THUDM_OVERALL = re.compile(r"'综合得分': (\d+(\.\d{1,2})?)")


def first_answer(row: dict) -> str | None:
    """The judge's first reply for this row (None when the call itself failed: FastChat's $ERROR$)."""
    if row.get("failed_attempts"):
        return row["failed_attempts"][0].get("judgment")
    return row.get("judgment")


def fastchat_rating(judgment: str | None) -> float:
    if judgment is None:
        return -1.0
    match = _FASTCHAT_ONE_SCORE.search(judgment) or _FASTCHAT_ONE_SCORE_BACKUP.search(judgment)
    return float(ast.literal_eval(match.group(1))) if match else -1.0


def fastchat_pair_winner(judgment: str | None) -> str:
    """"A", "B", "tie" or "error"."""
    for token, winner in (("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie")):
        if judgment is not None and token in judgment:
            return winner
    return "error"


def thudm_score(judgment: str | None) -> float:
    if judgment is None:
        return -1.0
    match = _THUDM_LAST_DICT.search(judgment)
    rating = {key: int(value) for key, value in _THUDM_KEY_VALUE.findall(match.group(1))} if match else {}
    score = rating.get(ALIGNBENCH_OVERALL_KEY, -1)
    if score == -1:
        found = _THUDM_OVERALL.search(judgment)
        score = float(found.group(1)) if found else -1
    return float(score)


def fastchat_single_figure(rows: list[dict]) -> float | None:
    """FastChat show_result's "Average" for one model's rows (every row, -1 dropped)."""
    scores = [s for s in (fastchat_rating(first_answer(row)) for row in rows) if s != -1]
    return round(sum(scores) / len(scores), 4) if scores else None


def fastchat_pair_figure(rows: list[dict], model: str) -> float | None:
    """FastChat show_result's win_rate_adjusted of `model` from the pairwise rows it plays in (the
    first repeat of each game: FastChat judges each game once)."""
    games: dict[tuple, dict[int, str]] = defaultdict(dict)
    for row in rows:
        if (row.get("repeat") or 0) == 0:
            first, second = (row["model"], row["baseline"]) if row["game"] == 1 else (row["baseline"], row["model"])
            winner = fastchat_pair_winner(first_answer(row))
            games[(row["model"], row["baseline"], row["question_id"], row["turn"])][row["game"]] = (
                {"A": first, "B": second}.get(winner, winner)
            )
    points = []
    for outcome in games.values():
        game_1, game_2 = outcome.get(1, "error"), outcome.get(2, "error")
        if "error" in (game_1, game_2):
            continue
        points.append(0.5 if game_1 == "tie" or game_1 != game_2 else float(game_1 == model))
    return round(sum(points) / len(points), 4) if points else None


def thudm_figure(rows: list[dict]) -> float | None:
    """THUDM show_result's 总分 for one model's rows: -1 failures averaged in."""
    per_category: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        per_category[row["category"]].append(thudm_score(first_answer(row)))
    with np.errstate(all="ignore"):
        means = {category: float(np.mean(values)) for category, values in per_category.items()}
        reasoning = np.mean([means.get(c, np.nan) for c in ALIGNBENCH_REASONING])
        language = np.mean([means.get(c, np.nan) for c in ALIGNBENCH_LANGUAGE])
    overall = (reasoning + language) / 2
    return None if np.isnan(overall) else round(float(overall), 4)
