"""From responses to chosen/rejected pairs, on hand-made records."""

import json

import pytest

from annotation.errors import AnnotationError
from annotation.logic.agreement import plurality
from annotation.logic.resolve import AnnotatedPair, JudgeSuggestion, Policy, Vote, judge_human_agreement, resolve

PROMPT = [{"role": "user", "content": "Capital of France?"}]


def pair(record_id, votes=(), suggestion=None):
    return AnnotatedPair(
        record_id=record_id,
        prompt=PROMPT,
        answer_a=f"{record_id} answer shown as A",
        answer_b=f"{record_id} answer shown as B",
        metadata={"model_a": "model-x", "model_b": "model-y", "prompt_id": "p1", "source": "s", "category": "geo"},
        votes=tuple(votes),
        suggestion=suggestion,
    )


def vote(user, label, status="submitted", **values):
    return Vote(user, status, {"preference": label, **values})


def test_plurality():
    assert plurality(["a", "a", "b"]) == ("a", pytest.approx(2 / 3))
    assert plurality(["a", "b"]) == (None, 0.5)
    assert plurality([]) == (None, 0.0)


def test_chosen_side_is_mapped_back_to_the_real_answer_and_model():
    result = resolve([pair("r1", [vote("ann", "b")]), pair("r2", [vote("ann", "a")])], Policy())
    by_id = {row["record_id"]: row for row in result.rows}
    r1 = by_id["r1"]
    assert r1["chosen"] == [{"role": "assistant", "content": "r1 answer shown as B"}]
    assert r1["rejected"] == [{"role": "assistant", "content": "r1 answer shown as A"}]
    assert (r1["chosen_model"], r1["rejected_model"], r1["chosen_was_shown_as"]) == ("model-y", "model-x", "B")
    assert r1["prompt"] == PROMPT
    r2 = by_id["r2"]
    assert (r2["chosen"][0]["content"], r2["chosen_model"]) == ("r2 answer shown as A", "model-x")


def test_every_drop_is_counted_with_its_reason():
    pairs = [
        pair("none"),
        pair("drafts-only", [vote("ann", "a", status="draft"), Vote("bob", "discarded", {})]),
        pair("split", [vote("ann", "a"), vote("bob", "b")]),
        pair("weak", [vote("ann", "a"), vote("bob", "a"), vote("cy", "b"), vote("dee", "tie"), vote("eve", "both_bad")]),
        pair("tie", [vote("ann", "tie"), vote("bob", "tie")]),
        pair("bad", [vote("ann", "both_bad"), vote("bob", "both_bad"), vote("cy", "a")]),
        pair("one-vote", [vote("ann", "a")]),
        pair("kept", [vote("ann", "a"), vote("bob", "a"), vote("cy", "b", status="draft")]),
    ]
    result = resolve(pairs, Policy(min_votes=2, min_agreement=0.5))
    assert result.dropped == {
        "gold": 0,
        "only_flagged_annotators": 0,
        "not_annotated": 1,
        "no_submitted_response": 1,
        "too_few_votes": 1,
        "no_majority": 1,
        "below_min_agreement": 1,  # a holds 2 of 5 votes = 0.4
        "tie": 1,
        "both_bad": 1,
    }
    assert [row["record_id"] for row in result.rows] == ["kept"]
    kept = result.rows[0]
    assert kept["votes"] == 2 and kept["agreement"] == 1.0 and kept["annotators"] == ["ann", "bob"]
    # submitted: split 2 + weak 5 + tie 2 + bad 3 + one-vote 1 + kept 2
    assert result.responses == {"submitted": 15, "draft": 2, "discarded": 1}


def test_strength_aspects_and_rationales_come_from_the_winning_votes():
    votes = [
        vote("ann", "b", strength=3, helpfulness_a=2, helpfulness_b=5, rationale="B is right"),
        vote("bob", "b", strength=2, helpfulness_a=1, helpfulness_b=4),
        vote("cy", "a", strength=1, helpfulness_a=5, helpfulness_b=1, rationale="A"),
    ]
    row = resolve([pair("r", votes)], Policy()).rows[0]
    assert row["strength"] == 2.5
    assert json.loads(row["aspect_ratings"]) == {"helpfulness": {"chosen": 4.5, "rejected": 1.5}}
    assert row["rationales"] == ["B is right"]
    assert row["agreement"] == pytest.approx(2 / 3)


def test_scripted_responses_are_counted():
    votes = [vote("bot", "a", rationale="[scripted annotator] rule"), vote("ann", "a", rationale="human")]
    assert resolve([pair("r", votes)], Policy(), scripted_marker="[scripted annotator]").scripted_responses == 1


def test_judge_verdict_is_mapped_like_the_votes_and_compared_with_the_humans():
    pairs = [
        pair("agree", [vote("ann", "b")], JudgeSuggestion("b", 1.0, "judge-1")),
        pair("disagree", [vote("ann", "a")], JudgeSuggestion("b", 0.5, "judge-1")),
        pair("judge-tie", [vote("ann", "a")], JudgeSuggestion("tie", 0.5, "judge-1")),
        pair("human-bad", [vote("ann", "both_bad")], JudgeSuggestion("a", 1.0, "judge-1")),
        pair("undecided", [vote("ann", "a"), vote("bob", "b")], JudgeSuggestion("a", 1.0, "judge-1")),
        pair("no-suggestion", [vote("ann", "a")]),
    ]
    result = resolve(pairs, Policy())
    rows = {row["record_id"]: row for row in result.rows}
    assert rows["agree"]["judge_verdict"] == "chosen"
    assert rows["disagree"]["judge_verdict"] == "rejected"
    assert rows["judge-tie"]["judge_verdict"] == "tie"
    assert rows["no-suggestion"]["judge_verdict"] is None
    report = judge_human_agreement(pairs, result.majority)
    # compared (judge, human): (b,b) (b,a) (tie,a): accuracy 1/3;
    # kappa: p_o 1/3; judge b 2/3, tie 1/3; human b 1/3, a 2/3 -> p_e 2/9 -> (1/3 - 2/9)/(7/9) = 1/7
    assert report == {
        "records_with_suggestion": 5,
        "compared": 3,
        "excluded_human_both_bad": 1,
        "excluded_no_human_plurality": 1,
        "accuracy": pytest.approx(1 / 3),
        "cohen_kappa": pytest.approx(1 / 7),
    }
    assert judge_human_agreement([pair("x", [vote("ann", "a")])], {"x": "a"}) is None


def test_policy_is_checked_with_the_option_named():
    with pytest.raises(AnnotationError, match="--min-votes 0: must be at least 1"):
        Policy(min_votes=0)
    with pytest.raises(AnnotationError, match=r"--min-agreement 1.5: must be between 0 and 1"):
        Policy(min_agreement=1.5)
