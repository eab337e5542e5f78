"""Strict parsing on realistic judgments and the traps, next to what FastChat/THUDM read from them
(golden/*.json, recorded by running their code)."""

import json

import pytest

from align.judging.parsing import (
    JudgmentParseError,
    parse_alignbench_rating,
    parse_mt_bench_rating,
    parse_pair_verdict,
)
from judging_support import GOLDEN

FASTCHAT = json.loads((GOLDEN / "fastchat_mt_bench.json").read_text(encoding="utf-8"))
THUDM = json.loads((GOLDEN / "thudm_alignbench.json").read_text(encoding="utf-8"))
FASTCHAT_SCORE = {case["judgment"]: case["fastchat_score"] for case in FASTCHAT["rating_traps"]}
FASTCHAT_WINNER = {case["judgment"]: case["fastchat_winner"] for case in FASTCHAT["pair_traps"]}
THUDM_READING = {case["judgment"]: (case["thudm_rating"], case["thudm_score"]) for case in THUDM["traps"]}


@pytest.mark.parametrize(
    "judgment, expected",
    [
        ("The answer is accurate and well written. Rating: [[8]]", 8.0),
        ("Decent answer. Rating: [[7.5]]", 7.5),
        ('Judging by the format "[[rating]]", I give: [[9]]', 9.0),
    ],
)
def test_ratings_in_the_asked_format_parse_like_fastchat(judgment, expected):
    assert parse_mt_bench_rating(judgment) == expected == FASTCHAT_SCORE[judgment]


@pytest.mark.parametrize(
    "judgment, reason",
    [
        # FastChat falls back to single brackets and reads the citation as a rating of 1.
        ("Helpful [1] and cites sources [2]. Overall I would give it a 7.", "citation"),
        # FastChat takes 15 on a 1-10 scale.
        ("Out of scale. Rating: [[15]]", "outside 1..10"),
        # FastChat scores -1 (and drops it silently in show_result); here it is a counted failure.
        ("Rating: 8", "without the double brackets"),
        # FastChat takes the first number.
        ("I first thought [[6]] but on reflection [[8]].", "ambiguous"),
    ],
)
def test_rating_traps_fail_with_a_reason(judgment, reason):
    with pytest.raises(JudgmentParseError, match=reason.replace(".", r"\.")):
        parse_mt_bench_rating(judgment)
    assert judgment in FASTCHAT_SCORE  # the golden records what FastChat made of it
    assert FASTCHAT_SCORE[judgment] in (1, 15, -1, 6)


def test_pair_verdicts():
    assert parse_pair_verdict("Assistant A is more detailed. [[A]]") == "A" == FASTCHAT_WINNER["Assistant A is more detailed. [[A]]"]
    assert parse_pair_verdict("Tie. [[C]]") == "tie" == FASTCHAT_WINNER["Tie. [[C]]"]
    quoting = 'Format: "[[A]]" if A is better, "[[B]]" if B is better. My verdict: [[B]]'
    assert FASTCHAT_WINNER[quoting] == "A"  # FastChat sees "[[A]]" first and calls it for A
    with pytest.raises(JudgmentParseError, match="ambiguous"):
        parse_pair_verdict(quoting)
    with pytest.raises(JudgmentParseError, match="no \\[\\[A\\]\\]"):
        parse_pair_verdict("Both are fine, A slightly better.")


DIMS = ["事实正确性", "满足用户需求", "清晰度", "完备性"]


def test_alignbench_single_quoted_integer_dict_reads_as_thudm():
    text = "评价……\n{'事实正确性': 8, '满足用户需求': 7, '清晰度': 9, '完备性': 7, '综合得分': 7}"
    rating = parse_alignbench_rating(text, DIMS)
    thudm_rating, thudm_score = THUDM_READING[text]
    assert rating.overall == thudm_score == 7
    assert rating.dimensions == {k: v for k, v in thudm_rating.items() if k != "综合得分"}
    assert rating.missing_dimensions == ()


def test_alignbench_double_quotes_parse_where_thudm_loses_everything():
    text = '评价……\n{"事实正确性": 8, "满足用户需求": 7, "清晰度": 9, "完备性": 7, "综合得分": 7}'
    assert THUDM_READING[text] == ({}, -1)
    rating = parse_alignbench_rating(text, DIMS)
    assert (rating.overall, rating.dimensions["清晰度"]) == (7.0, 9.0)


def test_alignbench_decimals_are_not_truncated():
    text = "评价……\n{'事实正确性': 8.5, '满足用户需求': 7, '清晰度': 9, '完备性': 7, '综合得分': 7.5}"
    thudm_rating, thudm_score = THUDM_READING[text]
    assert (thudm_rating["事实正确性"], thudm_score) == (8, 7)  # THUDM truncates 8.5 -> 8, 7.5 -> 7
    rating = parse_alignbench_rating(text, DIMS)
    assert (rating.dimensions["事实正确性"], rating.overall) == (8.5, 7.5)


def test_alignbench_multiline_dict_keeps_its_dimensions_and_reports_missing_ones():
    text = "评价……\n{\n  '事实正确性': 8,\n  '综合得分': 6\n}"
    assert THUDM_READING[text] == ({}, 6.0)  # THUDM's one-line regex loses the dimensions
    rating = parse_alignbench_rating(text, DIMS)
    assert rating.overall == 6.0 and rating.dimensions == {"事实正确性": 8.0}
    assert rating.missing_dimensions == ("满足用户需求", "清晰度", "完备性")


def test_alignbench_out_of_range_and_missing_scores_fail():
    out_of_range = "评价……\n{'事实正确性': 8, '综合得分': 15}"
    assert THUDM_READING[out_of_range][1] == 15  # THUDM averages a 15 into a 1-10 benchmark
    with pytest.raises(JudgmentParseError, match="outside"):
        parse_alignbench_rating(out_of_range)
    with pytest.raises(JudgmentParseError, match="no score dict"):
        parse_alignbench_rating("没有给出分数。")
    with pytest.raises(JudgmentParseError, match="no numeric score"):
        parse_alignbench_rating("{'综合得分': 很好}")


def test_alignbench_takes_the_last_dict_not_the_quoted_format_example():
    text = ("按照格式{'维度一': 打分, ..., '综合得分': 打分}回答。\n评价……\n"
            "{'事实正确性': 6, '满足用户需求': 5, '综合得分': 5}")
    assert parse_alignbench_rating(text).overall == 5.0
