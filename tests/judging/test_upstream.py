"""upstream.py restates how FastChat's and THUDM's scripts read and average judgments; these
pin it to what their code did (golden/*.json, recorded by running it) and to the scores FastChat
itself wrote into real judgment files (real/)."""


from align.judging.upstream import (
    fastchat_pair_figure,
    fastchat_pair_winner,
    fastchat_rating,
    fastchat_single_figure,
    thudm_figure,
    thudm_score,
)
from judging_support import FASTCHAT, REAL_PAIR, REAL_SINGLE, THUDM


def test_readings_match_the_recorded_runs_of_fastchat_and_thudm():
    for case in FASTCHAT["rating_traps"]:
        assert fastchat_rating(case["judgment"]) == case["fastchat_score"], case["judgment"]
    for case in FASTCHAT["pair_traps"]:
        assert fastchat_pair_winner(case["judgment"]) == case["fastchat_winner"], case["judgment"]
    for case in THUDM["traps"]:
        assert thudm_score(case["judgment"]) == case["thudm_score"], case["judgment"]


def test_readings_match_the_scores_fastchat_wrote_into_real_files():
    assert [fastchat_rating(row["judgment"]) for row in REAL_SINGLE] == [row["score"] for row in REAL_SINGLE]
    for row in REAL_PAIR:
        for game, a, b in (("g1", "model_1", "model_2"), ("g2", "model_2", "model_1")):
            winner = fastchat_pair_winner(row[f"{game}_judgment"])
            assert {"A": a, "B": b}.get(winner, winner) == row[f"{game}_winner"]


def row(model, qid, turn, category, judgment, failed=None, **extra):
    return {"model": model, "question_id": qid, "turn": turn, "category": category, "judgment": judgment,
            "failed_attempts": [{"judgment": text} for text in (failed or [])], **extra}


def test_figures_average_as_the_originals_do():
    # FastChat: every row counts (a duplicate twice), -1 dropped, no retry: a first reply "[3]" is read as 3.
    rows = [row("m", 81, 1, "writing", "Rating: [[8]]"), row("m", 81, 1, "writing", "Rating: [[6]]"),
            row("m", 82, 1, "writing", "Rating: [[9]]", failed=["see [3]"]), row("m", 83, 1, "writing", "none")]
    assert fastchat_single_figure(rows) == round((8 + 6 + 3) / 3, 4)
    # THUDM: -1 failures averaged into their category; reasoning and language are means of category means
    rows = [row("m", 1, 1, "数学计算", "{'综合得分': 6}"), row("m", 2, 1, "数学计算", "no dict"),
            row("m", 3, 1, "逻辑推理", "{'综合得分': 4}")] + [
            row("m", 10 + i, 1, c, "{'综合得分': 8}") for i, c in enumerate(["基本任务", "中文理解", "综合问答", "文本写作", "角色扮演", "专业能力"])]
    assert thudm_figure(rows) == round((((6 - 1) / 2 + 4) / 2 + 8) / 2, 4)
    # FastChat pairwise: a game with an error drops the match; a disagreement is a tie
    pair = [row("x", 81, 1, "writing", "[[A]]", game=1, baseline="y"), row("x", 81, 1, "writing", "[[B]]", game=2, baseline="y"),
            row("x", 82, 1, "writing", "[[A]]", game=1, baseline="y"), row("x", 82, 1, "writing", "[[A]]", game=2, baseline="y"),
            row("x", 83, 1, "writing", "[[A]]", game=1, baseline="y"), row("x", 83, 1, "writing", "$ERROR$", game=2, baseline="y")]
    assert fastchat_pair_figure(pair, "x") == 0.75  # (win + tie / 2) / 2 matches
    assert fastchat_pair_figure(pair, "y") == 0.25
