"""Aggregation on hand-computed cases (rows built directly, no judge involved)."""

import pytest

from align.judging.aggregate import (
    alignbench_ci,
    mt_bench_ci,
    pair_outcome,
    summarize_alignbench,
    summarize_mt_bench,
    summarize_pairwise,
)


def row(benchmark="mt_bench", model="m", qid=81, turn=1, category="writing", score=None, error=None,
        repeat=0, game=None, verdict=None, ratings=None, failed=0, missing=()):
    return {
        "benchmark": benchmark, "model": model, "question_id": qid, "turn": turn, "category": category,
        "game": game, "repeat": repeat, "baseline": "base" if game else None, "score": score, "verdict": verdict,
        "ratings": ratings, "error": error, "failed_attempts": [{}] * failed, "missing_dimensions": list(missing),
    }


def test_mt_bench_turns_categories_overall_failures_and_median_of_repeats():
    rows = [
        row(qid=81, turn=1, score=8), row(qid=81, turn=2, score=6),
        row(qid=82, turn=1, score=4), row(qid=82, turn=2, error="unparseable", failed=3),  # excluded, counted
        row(qid=111, turn=1, category="math", score=2, repeat=0),
        row(qid=111, turn=1, category="math", score=9, repeat=1),
        row(qid=111, turn=1, category="math", score=3, repeat=2),  # median of 2, 9, 3 = 3
        row(qid=111, turn=2, category="math", score=10, failed=1),  # parsed after one retry
    ]
    s = summarize_mt_bench(rows)["m"]
    # turn 1: (8 + 4 + 3) / 3 = 5; turn 2: (6 + 10) / 2 = 8; overall over all 5 items: 31 / 5 = 6.2
    assert (s["turn_1"], s["turn_2"], s["overall"]) == (5.0, 8.0, 6.2)
    # writing: (8 + 6 + 4) / 3 = 6; math: (3 + 10) / 2 = 6.5
    assert s["per_category"] == {"math": 6.5, "writing": 6.0}
    assert (s["n_items"], s["n_scored"], s["items_without_score"]) == (6, 5, 1)
    assert (s["judge_calls_failed"], s["parse_retries"]) == (1, 1)


def test_mt_bench_model_with_no_valid_score_is_none_not_zero():
    s = summarize_mt_bench([row(score=None, error="api: HTTP 500")])["m"]
    assert s["overall"] is None and s["turn_1"] is None and s["ci95"]["overall"] is None
    assert s["items_without_score"] == 1


def test_pair_outcome_follows_fastchat():
    assert pair_outcome("model", "model") == "win"
    assert pair_outcome("baseline", "baseline") == "loss"
    assert pair_outcome("model", "baseline") == "tie"  # inconsistent across orders
    assert pair_outcome("tie", "model") == "tie"
    assert pair_outcome("model", None) is None  # one order failed: no outcome, counted


def test_pairwise_rates_by_hand():
    b = "mt_bench_pair"
    rows = [
        row(b, qid=81, game=1, verdict="model"), row(b, qid=81, game=2, verdict="model"),  # win
        row(b, qid=82, game=1, verdict="baseline"), row(b, qid=82, game=2, verdict="baseline"),  # loss
        row(b, qid=83, game=1, verdict="model"), row(b, qid=83, game=2, verdict="baseline"),  # inconsistent -> tie
        row(b, qid=84, game=1, verdict="tie"), row(b, qid=84, game=2, verdict="model"),  # tie
        row(b, qid=85, game=1, verdict="model"), row(b, qid=85, game=2, error="unparseable"),  # no verdict
        # repeats: game 1 model, model, tie -> model; game 2 model, baseline -> tie of modes -> tie
        row(b, qid=86, game=1, verdict="model", repeat=0), row(b, qid=86, game=1, verdict="model", repeat=1),
        row(b, qid=86, game=1, verdict="tie", repeat=2),
        row(b, qid=86, game=2, verdict="model", repeat=0), row(b, qid=86, game=2, verdict="baseline", repeat=1),
    ]
    s = summarize_pairwise(rows)["m"]
    assert (s["win"], s["loss"], s["tie"], s["inconsistent"]) == (1, 1, 3, 1)
    assert (s["pairs_without_verdict"], s["n_pairs"], s["judge_calls_failed"]) == (1, 6, 1)
    assert s["win_rate"] == 0.2 and s["loss_rate"] == 0.2
    assert s["win_rate_adjusted"] == pytest.approx((1 + 0.5 * 3) / 5)


def test_alignbench_reasoning_language_overall_and_dimensions_by_hand():
    b = "alignbench"
    rows = [
        row(b, qid=1, category="数学计算", score=4, ratings={"事实正确性": 4, "逻辑连贯性": 5}),
        row(b, qid=2, category="数学计算", score=6, ratings={"事实正确性": 6, "逻辑连贯性": 7}),
        row(b, qid=3, category="逻辑推理", score=8, ratings={"事实正确性": 8}, missing=("逻辑连贯性",)),
        row(b, qid=4, category="基本任务", score=7, ratings={"事实正确性": 7, "清晰度": 9}),
        row(b, qid=5, category="专业能力", score=3, ratings={"事实正确性": 2, "清晰度": 3}),
        row(b, qid=6, category="专业能力", error="unparseable", failed=3),
    ]
    s = summarize_alignbench(rows)["m"]
    # reasoning: mean(数学计算 5, 逻辑推理 8) = 6.5; language: mean(基本任务 7, 专业能力 3) = 5; overall 5.75
    assert s["per_category"] == {"专业能力": 3.0, "基本任务": 7.0, "数学计算": 5.0, "逻辑推理": 8.0}
    assert (s["reasoning"], s["language"], s["overall"]) == (6.5, 5.0, 5.75)
    # 事实正确性: (4 + 6 + 8 + 7 + 2) / 5 = 5.4; 逻辑连贯性: (5 + 7) / 2 = 6; 清晰度: (9 + 3) / 2 = 6
    assert s["per_dimension"] == {"事实正确性": 5.4, "清晰度": 6.0, "逻辑连贯性": 6.0}
    assert (s["n_items"], s["n_scored"], s["items_without_score"], s["dimension_scores_missing"]) == (6, 5, 1, 1)
    assert s["categories_without_score"] == []


def test_bootstrap_intervals_bracket_the_estimate_and_are_repeatable():
    questions = [[(1, float(v)), (2, float(v + 1))] for v in (2, 4, 6, 8)]  # turn-1 mean 5, turn-2 mean 6
    ci = mt_bench_ci(questions)
    assert ci["turn_1"][0] < 5 < ci["turn_1"][1] and ci["turn_2"][0] < 6 < ci["turn_2"][1]
    assert 2 <= ci["overall"][0] < 5.5 < ci["overall"][1] <= 9
    assert mt_bench_ci(questions) == ci  # fixed seed
    assert mt_bench_ci([[(1, 7.0)]] * 4) == {"overall": [7.0, 7.0], "turn_1": [7.0, 7.0], "turn_2": None}
    strata = alignbench_ci({"数学计算": [4.0, 6.0], "基本任务": [7.0, 7.0]})
    assert strata["language"] == [7.0, 7.0] and strata["reasoning"][0] >= 4 and strata["reasoning"][1] <= 6


def test_all_pairs_count_for_both_models_as_fastchat_pairwise_all():
    def game(model, opponent, g, verdict):
        return {**row("mt_bench_pair", model=model, qid=81, game=g, verdict=verdict), "baseline": opponent,
                "pairing": "all"}

    rows = [game("a", "b", 1, "model"), game("a", "b", 2, "model"),  # a beats b
            game("a", "c", 1, "model"), game("a", "c", 2, "baseline"),  # the orders disagree: a tie
            game("b", "c", 1, "baseline"), game("b", "c", 2, "baseline")]  # c beats b
    s = summarize_pairwise(rows)
    assert {m: (v["win"], v["loss"], v["tie"]) for m, v in s.items()} == {"a": (1, 0, 1), "b": (0, 2, 0), "c": (1, 0, 1)}
    assert (s["a"]["win_rate_adjusted"], s["b"]["win_rate_adjusted"], s["c"]["win_rate_adjusted"]) == (0.75, 0.0, 0.75)
    assert s["c"]["opponents"] == ["a", "b"] and s["c"]["baseline"] == "all other models"
    assert (s["a"]["inconsistent"], s["c"]["inconsistent"], s["b"]["inconsistent"]) == (1, 1, 0)


def test_alignbench_out_of_range_dimension_scores_are_counted_not_averaged():
    rows = [{**row("alignbench", qid=1, category="基本任务", score=6, ratings={"清晰度": 7}), "odd_dimensions": {"创造性": 0}}]
    s = summarize_alignbench(rows)["m"]
    assert s["per_dimension"] == {"清晰度": 7.0} and s["dimension_scores_out_of_range"] == 1 and s["overall"] == 6.0
