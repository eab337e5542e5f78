"""From result rows to scores: pure functions, checked against hand-computed cases in the tests.

- An item (question × turn × model; × game for pairwise) scores the median of its successful
  repeats; an item with no successful repeat is excluded and counted, never scored -1 or 0.
- MT-Bench (FastChat show_result.py): turn_1 / turn_2 are the means over that turn's items;
  overall is the mean over all items of both turns; per category likewise.
- Pairwise (FastChat show_result.py): game 1 puts the model first, game 2 the opponent first;
  a win needs both games to agree; a tie in either game or disagreement counts as a tie
  (disagreements are also counted apart, as `inconsistent`); a pair with a game without verdict
  is counted and left out. win_rate_adjusted = (win + tie/2) / n. Against a baseline, each model
  is scored against it; with all pairs (pairwise-all), a pair's outcome counts for both models.
- Beside each of ours, the figure FastChat's / THUDM's show_result would print from the same
  judgments (upstream.py), so the numbers can be compared with the originals'.
- AlignBench (THUDM show_result.py): category means; reasoning = mean of the 数学计算 and 逻辑推理
  means, language = mean of the six language categories' means; overall = (reasoning + language) / 2.
  Per dimension: the mean of each dimension's scores (THUDM dimension_calculate.py).
- 95% confidence intervals: percentile bootstrap (1000 resamples, fixed seed) over questions,
  both turns of a question together; stratified by category for AlignBench, whose score weights
  categories equally.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable

import numpy as np

from align.data.benchmarks import ALIGNBENCH_LANGUAGE, ALIGNBENCH_REASONING
from .tasks import ALIGNBENCH, MT_BENCH, MT_BENCH_PAIR
from .upstream import fastchat_pair_figure, fastchat_single_figure, thudm_figure

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _item_key(row: dict) -> tuple:
    """(model, question, turn, opponent, game): one scored item; its repeats share the key."""
    return (row["model"], row["question_id"], row["turn"], row.get("baseline"), row.get("game"))


def group_items(rows: Iterable[dict], benchmark: str) -> dict[tuple, list[dict]]:
    items: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        if row["benchmark"] == benchmark:
            items[_item_key(row)].append(row)
    return items


def item_score(repeats: list[dict]) -> float | None:
    scores = [row["score"] for row in repeats if row["error"] is None and row["score"] is not None]
    return statistics.median(scores) if scores else None


def item_verdict(repeats: list[dict]) -> str | None:
    """The most common verdict of the repeats; a tie between different verdicts counts as "tie"."""
    counts = Counter(row["verdict"] for row in repeats if row["error"] is None and row["verdict"] is not None)
    if not counts:
        return None
    ranked = counts.most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return "tie"
    return ranked[0][0]


def item_dimensions(repeats: list[dict]) -> dict[str, float]:
    per_dimension: dict[str, list[float]] = defaultdict(list)
    for row in repeats:
        if row["error"] is None and row.get("ratings"):
            for dimension, value in row["ratings"].items():
                per_dimension[dimension].append(value)
    return {dimension: statistics.median(values) for dimension, values in per_dimension.items()}


def percentile_interval(samples: np.ndarray) -> list[float] | None:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return None
    low, high = np.percentile(samples, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def resample_indices(n: int, rng: np.random.Generator) -> np.ndarray:
    """BOOTSTRAP_SAMPLES rows of n indices drawn with replacement."""
    return rng.integers(0, n, size=(BOOTSTRAP_SAMPLES, n))


def ratio_ci(numerators: np.ndarray, denominators: np.ndarray, picks: np.ndarray) -> list[float] | None:
    """Interval of sum(numerators) / sum(denominators) over resampled units (rows of `picks`)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return percentile_interval(numerators[picks].sum(axis=1) / denominators[picks].sum(axis=1))


def _failures(items: dict[tuple, list[dict]], resolved: dict[tuple, object]) -> dict:
    rows = [row for repeats in items.values() for row in repeats]
    return {
        "judge_calls_failed": sum(1 for row in rows if row["error"]),
        "parse_retries": sum(len(row["failed_attempts"]) for row in rows if row["error"] is None),
        "items_without_score": sum(1 for value in resolved.values() if value is None),
    }


# ----- MT-Bench single-answer grading -----


def mt_bench_statistics(questions: list[list[tuple[int, float]]]) -> dict:
    """Scores per question as [(turn, score), ...] -> overall (all items), turn_1, turn_2."""
    flat = [(turn, score) for members in questions for turn, score in members]
    return {
        "overall": mean(score for _, score in flat),
        "turn_1": mean(score for turn, score in flat if turn == 1),
        "turn_2": mean(score for turn, score in flat if turn == 2),
    }


def mt_bench_ci(questions: list[list[tuple[int, float]]]) -> dict[str, list[float] | None]:
    """Resample questions (both turns travel together); the same resamples serve all three numbers."""
    if not questions:
        return {"overall": None, "turn_1": None, "turn_2": None}
    sums = np.array([[sum(s for t, s in q if t == turn) for turn in (1, 2)] for q in questions])
    counts = np.array([[sum(1 for t, _ in q if t == turn) for turn in (1, 2)] for q in questions], dtype=float)
    picks = resample_indices(len(questions), np.random.default_rng(BOOTSTRAP_SEED))
    return {
        "overall": ratio_ci(sums.sum(axis=1), counts.sum(axis=1), picks),
        "turn_1": ratio_ci(sums[:, 0], counts[:, 0], picks),
        "turn_2": ratio_ci(sums[:, 1], counts[:, 1], picks),
    }


def summarize_mt_bench(rows: Iterable[dict]) -> dict[str, dict]:
    """{model: {overall, turn_1, turn_2, per_category, ci95, n_items, ...}}."""
    items = group_items(rows, MT_BENCH)
    resolved = {key: item_score(repeats) for key, repeats in items.items()}
    summary = {}
    for model in sorted({key[0] for key in items}):
        model_items = {key: repeats for key, repeats in items.items() if key[0] == model}
        by_question: dict[int, list[tuple[int, float]]] = defaultdict(list)
        per_category: dict[str, list[float]] = defaultdict(list)
        for key in sorted(model_items):
            if resolved[key] is not None:
                by_question[key[1]].append((key[2], resolved[key]))
                per_category[model_items[key][0]["category"]].append(resolved[key])
        questions = list(by_question.values())
        stats = mt_bench_statistics(questions)
        summary[model] = {
            **{field: _round(value) for field, value in stats.items()},
            "per_category": {category: _round(mean(values)) for category, values in sorted(per_category.items())},
            "ci95": mt_bench_ci(questions),
            "n_items": len(model_items),
            "n_scored": sum(len(members) for members in questions),
            **_failures(model_items, {key: resolved[key] for key in model_items}),
            **_as_fastchat(model_items),
        }
    return summary


def _as_fastchat(items: dict[tuple, list[dict]]) -> dict:
    """FastChat show_result's figure for these rows, and what makes it differ from ours."""
    rows = [row for repeats in items.values() for row in repeats]
    return {
        "fastchat_show_result": fastchat_single_figure(rows),
        "items_with_several_rows": sum(1 for repeats in items.values() if len(repeats) > 1),
        "retried_items": sum(1 for row in rows if row["failed_attempts"] and row["error"] is None),
    }


# ----- MT-Bench pairwise: against a baseline, or all pairs -----


def pair_outcome(game_1: str | None, game_2: str | None) -> str | None:
    """FastChat's rule: both games must name the same winner; a tie in either or a disagreement is a tie."""
    if game_1 is None or game_2 is None:
        return None
    if game_1 == "tie" or game_1 != game_2:
        return "tie"
    return "win" if game_1 == "model" else "loss"


def _rates(outcomes: list[str]) -> dict:
    n = len(outcomes)
    counts = Counter(outcomes)
    if n == 0:
        return {"win_rate": None, "loss_rate": None, "win_rate_adjusted": None}
    return {
        "win_rate": _round(counts["win"] / n),
        "loss_rate": _round(counts["loss"] / n),
        "win_rate_adjusted": _round((counts["win"] + 0.5 * counts["tie"]) / n),
    }


def adjusted_win_rate_ci(questions: list[list[str]]) -> list[float] | None:
    if not questions:
        return None
    points = np.array([sum({"win": 1.0, "tie": 0.5}.get(o, 0.0) for o in q) for q in questions])
    counts = np.array([len(q) for q in questions], dtype=float)
    return ratio_ci(points, counts, resample_indices(len(questions), np.random.default_rng(BOOTSTRAP_SEED)))


FLIPPED = {"win": "loss", "loss": "win", "tie": "tie"}


def summarize_pairwise(rows: Iterable[dict]) -> dict[str, dict]:
    """{model: {baseline, win, loss, tie, inconsistent, win_rate_adjusted, ...}}. Rows of an all-pairs
    run (`pairing` "all") count for both models of a pair; against a baseline, the baseline has no entry."""
    items = group_items(rows, MT_BENCH_PAIR)
    verdicts = {key: item_verdict(repeats) for key, repeats in items.items()}
    categories = {key[1]: repeats[0]["category"] for key, repeats in items.items()}
    all_pairs = any(repeats[0].get("pairing") == "all" for repeats in items.values())
    # (model, opponent) -> {(qid, turn): outcome or None}, and which games disagreed
    pairs: dict[tuple[str, str], dict[tuple[int, int], str | None]] = defaultdict(dict)
    inconsistent: Counter = Counter()
    for model, qid, turn, opponent in sorted({key[:4] for key in items}, key=lambda k: tuple(map(str, k))):
        game_1, game_2 = verdicts.get((model, qid, turn, opponent, 1)), verdicts.get((model, qid, turn, opponent, 2))
        pairs[(model, opponent)][(qid, turn)] = pair_outcome(game_1, game_2)
        disagree = game_1 is not None and game_2 is not None and game_1 != game_2 and "tie" not in (game_1, game_2)
        inconsistent[(model, opponent)] += disagree
    seen_as = defaultdict(list)  # model -> [(pair key, flipped)]
    for model, opponent in pairs:
        seen_as[model].append(((model, opponent), False))
        if all_pairs:
            seen_as[opponent].append(((model, opponent), True))
    summary = {}
    for model in sorted(seen_as):
        outcomes: list[tuple[int, str]] = []  # (question id, outcome from this model's side)
        unresolved = inconsistent_pairs = 0
        for pair, flipped in seen_as[model]:
            inconsistent_pairs += inconsistent[pair]
            for (qid, _turn), outcome in sorted(pairs[pair].items()):
                if outcome is None:
                    unresolved += 1
                else:
                    outcomes.append((qid, FLIPPED[outcome] if flipped else outcome))
        per_category, by_question = defaultdict(list), defaultdict(list)
        for qid, outcome in outcomes:
            per_category[categories[qid]].append(outcome)
            by_question[qid].append(outcome)
        counts = Counter(outcome for _, outcome in outcomes)
        opponents = sorted({pair[1] if not flipped else pair[0] for pair, flipped in seen_as[model]})
        model_rows = [row for (m, _q, _t, o, _g), repeats in items.items() for row in repeats
                      if m == model or (all_pairs and o == model)]
        summary[model] = {
            "baseline": "all other models" if all_pairs else opponents[0],
            "opponents": opponents,
            "win": counts["win"],
            "loss": counts["loss"],
            "tie": counts["tie"],
            "inconsistent": inconsistent_pairs,
            **_rates([outcome for _, outcome in outcomes]),
            "per_category": {
                category: _rates(values)["win_rate_adjusted"] for category, values in sorted(per_category.items())
            },
            "ci95": {"win_rate_adjusted": adjusted_win_rate_ci(list(by_question.values()))},
            "n_pairs": len(outcomes) + unresolved,
            "pairs_without_verdict": unresolved,
            "judge_calls_failed": sum(1 for row in model_rows if row["error"]),
            "fastchat_show_result": fastchat_pair_figure(model_rows, model),
        }
    return summary


# ----- AlignBench -----


def alignbench_statistics(per_category: dict[str, list[float]]) -> dict:
    means = {category: mean(values) for category, values in per_category.items() if values}
    reasoning = mean(means[c] for c in ALIGNBENCH_REASONING if c in means)
    language = mean(means[c] for c in ALIGNBENCH_LANGUAGE if c in means)
    overall = mean(v for v in (reasoning, language) if v is not None)
    return {"overall": overall, "reasoning": reasoning, "language": language, "per_category": means}


def alignbench_ci(per_category: dict[str, list[float]]) -> dict[str, list[float] | None]:
    """Resample within each category (AlignBench weights categories, not questions, equally)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = {}
    for category in sorted(per_category):
        scores = np.array(per_category[category])
        means[category] = scores[resample_indices(len(scores), rng)].mean(axis=1)

    def average(categories) -> np.ndarray | None:
        present = [means[c] for c in categories if c in means]
        return np.mean(present, axis=0) if present else None

    reasoning, language = average(ALIGNBENCH_REASONING), average(ALIGNBENCH_LANGUAGE)
    halves = [h for h in (reasoning, language) if h is not None]
    overall = np.mean(halves, axis=0) if halves else None
    return {
        name: None if values is None else percentile_interval(values)
        for name, values in (("overall", overall), ("reasoning", reasoning), ("language", language))
    }


def summarize_alignbench(rows: Iterable[dict]) -> dict[str, dict]:
    items = group_items(rows, ALIGNBENCH)
    resolved = {key: item_score(repeats) for key, repeats in items.items()}
    summary = {}
    for model in sorted({key[0] for key in items}):
        model_items = {key: repeats for key, repeats in items.items() if key[0] == model}
        per_category: dict[str, list[float]] = defaultdict(list)
        per_dimension: dict[str, list[float]] = defaultdict(list)
        missing_dimensions = odd_dimensions = 0
        for key, repeats in model_items.items():
            if resolved[key] is None:
                continue
            per_category[repeats[0]["category"]].append(resolved[key])
            for dimension, value in item_dimensions(repeats).items():
                per_dimension[dimension].append(value)
            missing_dimensions += sum(len(row["missing_dimensions"]) for row in repeats if row["error"] is None)
            odd_dimensions += sum(len(row.get("odd_dimensions") or {}) for row in repeats if row["error"] is None)
        stats = alignbench_statistics(per_category)
        expected = sorted({row["category"] for repeats in model_items.values() for row in repeats})
        summary[model] = {
            "overall": _round(stats["overall"]),
            "reasoning": _round(stats["reasoning"]),
            "language": _round(stats["language"]),
            "per_category": {category: _round(value) for category, value in sorted(stats["per_category"].items())},
            "per_dimension": {dimension: _round(mean(values)) for dimension, values in sorted(per_dimension.items())},
            "ci95": alignbench_ci(per_category),
            "categories_without_score": [category for category in expected if category not in per_category],
            "dimension_scores_missing": missing_dimensions,
            "dimension_scores_out_of_range": odd_dimensions,
            "n_items": len(model_items),
            "n_scored": sum(len(values) for values in per_category.values()),
            **_failures(model_items, {key: resolved[key] for key in model_items}),
            "thudm_show_result": thudm_figure([row for repeats in model_items.values() for row in repeats]),
        }
    return summary


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def summarize_rows(rows: list[dict]) -> dict[str, dict]:
    """Every benchmark present in the rows -> {model: summary}."""
    benchmarks = {row["benchmark"] for row in rows}
    summary = {}
    if MT_BENCH in benchmarks:
        summary[MT_BENCH] = summarize_mt_bench(rows)
    if MT_BENCH_PAIR in benchmarks:
        summary[MT_BENCH_PAIR] = summarize_pairwise(rows)
    if ALIGNBENCH in benchmarks:
        summary[ALIGNBENCH] = summarize_alignbench(rows)
    return summary
