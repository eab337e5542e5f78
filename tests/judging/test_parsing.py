"""Parsing on real judgments (real/, GPT-4's own output from published FastChat files) and on the
traps, next to what FastChat/THUDM read from them (golden/*.json, recorded by running their
code). Where we differ from them on purpose, the test says so."""

import json

import pytest

from align.judging.parsing import (
    JudgmentParseError,
    parse_alignbench_rating,
    parse_mt_bench_rating,
    parse_pair_verdict,
)
from align.judging.upstream import thudm_score
from judging_support import FASTCHAT, REAL, REAL_PAIR, REAL_SINGLE, THUDM

FASTCHAT_SCORE = {case["judgment"]: case["fastchat_score"] for case in FASTCHAT["rating_traps"]}
FASTCHAT_WINNER = {case["judgment"]: case["fastchat_winner"] for case in FASTCHAT["pair_traps"]}
THUDM_READING = {case["judgment"]: (case["thudm_rating"], case["thudm_score"]) for case in THUDM["traps"]}


@pytest.mark.parametrize(
    "judgment, expected",
    [
        ("The answer is accurate and well written. Rating: [[8]]", 8.0),
        ("Decent answer. Rating: [[7.5]]", 7.5),
        ('Judging by the format "[[rating]]", I give: [[9]]', 9.0),
        # the first rating wins, as in FastChat (re.search)
        ("I first thought [[6]] but on reflection [[8]].", 6.0),
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
    ],
)
def test_rating_traps_fail_with_a_reason(judgment, reason):
    with pytest.raises(JudgmentParseError, match=reason.replace(".", r"\.")):
        parse_mt_bench_rating(judgment)
    assert judgment in FASTCHAT_SCORE  # the golden records what FastChat made of it
    assert FASTCHAT_SCORE[judgment] in (1, 15, -1)


OTHER = json.loads((REAL / "other_judgments.json").read_text(encoding="utf-8"))


def test_every_real_gpt4_rating_reads_as_fastchat_recorded_it():
    rated = [row for row in REAL_SINGLE if row["score"] != -1]
    assert len(rated) == 87
    assert [parse_mt_bench_rating(row["judgment"]) for row in rated] == [float(row["score"]) for row in rated]
    # FastChat's -1: the judge described the empty answer and gave no rating
    (unrated,) = [row for row in REAL_SINGLE if row["score"] == -1]
    with pytest.raises(JudgmentParseError, match="no \\[\\[rating\\]\\]"):
        parse_mt_bench_rating(unrated["judgment"])


def test_single_bracket_code_indexes_in_real_judgments_are_never_ratings():
    # Real coding judgments quote code such as `T[0] = 1` before their "Rating: [[1]]".
    with_index = [row for row in REAL_SINGLE if "[0]" in row["judgment"] and row["score"] != -1]
    assert len(with_index) >= 5
    for row in with_index:
        assert parse_mt_bench_rating(row["judgment"]) == row["score"]  # the [[x]] wins, as in FastChat
        cut = row["judgment"][: row["judgment"].rindex("[[")]  # the same judgment without its rating
        # FastChat would fall back to the first single-bracket number (a code index, here 0 or 1) and
        # average it in; deliberate difference: here it is a failure that names the index.
        with pytest.raises(JudgmentParseError, match="single brackets: a citation or an index"):
            parse_mt_bench_rating(cut)


def test_a_hypothetical_after_the_rating_does_not_drop_it():
    # The example of issue #11 (no published file read for these tests holds such a judgment).
    judgment = ("The answer is correct and clearly explained. Rating: [[9]]\n\nWith a worked example it "
                "could be improved, earning [[10]].")
    assert parse_mt_bench_rating(judgment) == 9.0


def test_a_real_out_of_scale_rating_is_rejected_where_fastchat_takes_it():
    case = OTHER["out_of_scale"]
    assert case["fastchat_score"] == 70  # FastChat averaged 70 into a 1-10 benchmark
    with pytest.raises(JudgmentParseError, match="rating 70 is outside 1..10"):
        parse_mt_bench_rating(case["judgment"])
    # the first rating is the judge's: an out-of-range one is not skipped for a later in-range one
    with pytest.raises(JudgmentParseError, match="outside"):
        parse_mt_bench_rating("Rating: [[70]] (that is [[7]] on a 1-10 scale)")


def test_every_real_gpt4_pair_verdict_reads_as_fastchat_recorded_it():
    seen = 0
    for row in REAL_PAIR:
        for game, a_is_model_1 in (("g1", True), ("g2", False)):
            winner, judgment = row[f"{game}_winner"], row[f"{game}_judgment"]
            if winner == "error":
                assert judgment == "$ERROR$"
                with pytest.raises(JudgmentParseError):
                    parse_pair_verdict(judgment)
                continue
            ours = parse_pair_verdict(judgment)
            as_model = {"A": "model_1" if a_is_model_1 else "model_2", "B": "model_2" if a_is_model_1 else "model_1"}
            assert as_model.get(ours, ours) == winner
            seen += 1
    assert seen == 19


def test_pair_verdicts():
    assert parse_pair_verdict("Assistant A is more detailed. [[A]]") == "A" == FASTCHAT_WINNER["Assistant A is more detailed. [[A]]"]
    assert parse_pair_verdict("Tie. [[C]]") == "tie" == FASTCHAT_WINNER["Tie. [[C]]"]
    # The first verdict wins. Both FastChat and we are fooled by a judge quoting the format first.
    quoting = 'Format: "[[A]]" if A is better, "[[B]]" if B is better. My verdict: [[B]]'
    assert FASTCHAT_WINNER[quoting] == "A" == parse_pair_verdict(quoting)
    # Deliberate difference: FastChat answers A whenever "[[A]]" appears anywhere; here the first counts.
    assert parse_pair_verdict("My verdict: [[B]]. Had A cited its sources, it would be [[A]].") == "B"
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


def test_a_real_alignbench_judgment_reads_as_thudm():
    text = OTHER["alignbench"]["judgment"]
    dims = ["事实正确性", "满足用户需求", "逻辑连贯性", "创造性", "丰富度"]
    rating = parse_alignbench_rating(text, dims)
    assert rating.overall == 5.0 == thudm_score(text)
    assert rating.dimensions == {"事实正确性": 8, "满足用户需求": 5, "逻辑连贯性": 8, "创造性": 4, "丰富度": 4}
    assert rating.missing_dimensions == () and rating.odd_dimensions == {}


def test_alignbench_a_stray_dimension_keeps_a_valid_overall_and_is_recorded():
    text = OTHER["alignbench"]["judgment"].replace("'创造性': 4", "'创造性': 0")
    rating = parse_alignbench_rating(text)
    assert rating.overall == 5.0 and rating.odd_dimensions == {"创造性": 0.0}
    assert "创造性" not in rating.dimensions and rating.dimensions["丰富度"] == 4.0


def test_alignbench_out_of_range_and_missing_scores_fail():
    out_of_range = "评价……\n{'事实正确性': 8, '综合得分': 15}"
    assert THUDM_READING[out_of_range][1] == 15  # THUDM averages a 15 into a 1-10 benchmark
    with pytest.raises(JudgmentParseError, match="综合得分.* 15 is outside"):
        parse_alignbench_rating(out_of_range)
    with pytest.raises(JudgmentParseError, match="no score dict"):
        parse_alignbench_rating("没有给出分数。")
    with pytest.raises(JudgmentParseError, match="no numeric score"):
        parse_alignbench_rating("{'综合得分': 很好}")


def test_alignbench_takes_the_last_dict_not_the_quoted_format_example():
    text = ("按照格式{'维度一': 打分, ..., '综合得分': 打分}回答。\n评价……\n"
            "{'事实正确性': 6, '满足用户需求': 5, '综合得分': 5}")
    assert parse_alignbench_rating(text).overall == 5.0
