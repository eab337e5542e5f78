"""Annotator quality control on hand-made records: gold accuracy, agreement with the majority of
the others, flagging, and what a flagged annotator's votes no longer decide (all hand-computed)."""

import json

import pytest

from annotation.errors import AnnotationError
from annotation.logic.pairs import make_pairs, parse_rows
from annotation.logic.quality import QualityPolicy, annotator_quality, gold_side
from annotation.logic.resolve import AnnotatedPair, Policy, Vote, resolve, submitted_labels
from annotation.pull import build_card, empty_reason

PROMPT = [{"role": "user", "content": "Which is right?"}]


def pair(record_id, votes, gold=None, model_a="good", model_b="bad"):
    metadata = {"model_a": model_a, "model_b": model_b, "prompt_id": record_id}
    if gold:
        metadata["gold"] = gold
    return AnnotatedPair(record_id, PROMPT, f"{record_id} A", f"{record_id} B", metadata,
                         tuple(Vote(user, "submitted", {"preference": label}) for user, label in votes))


def test_gold_side_follows_the_shown_order():
    assert gold_side({"model_a": "x", "model_b": "y", "gold": "y"}) == "b"
    assert gold_side({"model_a": "x", "model_b": "y", "gold": "x"}) == "a"
    assert gold_side({"model_a": "x", "model_b": "y"}) is None
    with pytest.raises(AnnotationError, match="neither model_a nor model_b"):
        gold_side({"model_a": "x", "model_b": "y", "gold": "z"})


def test_quality_by_hand():
    # 5 gold pairs, the better answer shown as A (gold "good" is model_a) except g4, shown as B.
    gold = [
        pair("g0", [("ann", "a"), ("bob", "a"), ("eve", "b")], gold="good"),
        pair("g1", [("ann", "a"), ("bob", "a"), ("eve", "tie")], gold="good"),
        pair("g2", [("ann", "a"), ("bob", "b"), ("eve", "b")], gold="good"),
        pair("g3", [("ann", "a"), ("bob", "a"), ("eve", "a")], gold="good"),
        pair("g4", [("ann", "b"), ("bob", "b"), ("eve", "a")], gold="good", model_a="bad", model_b="good"),
    ]
    plain = [
        pair("p0", [("ann", "a"), ("bob", "a"), ("eve", "b")]),
        pair("p1", [("ann", "b"), ("bob", "b"), ("eve", "b")]),
        pair("p2", [("ann", "a"), ("eve", "b")]),  # each has one other: ann vs b, eve vs a
    ]
    quality = annotator_quality(gold + plain, QualityPolicy(), submitted_labels)
    # ann: gold 5/5; majority: p0 others (a, b) no plurality; p1 others (b, b) -> b agrees; p2 other (b) disagrees: 1/2
    assert quality["ann"] == {"gold_answered": 5, "gold_correct": 5, "gold_accuracy": 1.0,
                              "agreement_with_majority": 0.5, "majority_compared": 2, "flagged": False}
    # bob: gold right on g0 g1 g3 g4 = 4/5 = 0.8; p0 others (a, b) none; p1 agrees: 1/1
    assert quality["bob"]["gold_accuracy"] == pytest.approx(0.8) and quality["bob"]["agreement_with_majority"] == 1.0
    assert not quality["bob"]["flagged"]
    # eve: right only on g2 (b? no: gold is A there) -> g3 (a) right only: 1/5 = 0.2 < 0.7 -> flagged
    assert quality["eve"]["gold_correct"] == 1 and quality["eve"]["flagged"]
    # p0 others of eve (a, a) -> a, eve says b: disagree; p1 agrees; p2 other (a) vs b: disagree -> 1/3
    assert quality["eve"]["agreement_with_majority"] == pytest.approx(1 / 3)
    # below the minimum of gold answered nobody is flagged
    lenient = annotator_quality(gold + plain, QualityPolicy(min_gold_answered=6), submitted_labels)
    assert not any(stats["flagged"] for stats in lenient.values())


def test_flagged_votes_do_not_decide_and_every_exclusion_is_counted():
    gold = [pair(f"g{i}", [("ann", "a"), ("eve", "b")], gold="good") for i in range(5)]
    plain = [
        pair("swing", [("ann", "a"), ("eve", "b"), ("bob", "b")]),  # without eve: a vs b, no majority
        pair("eve-only", [("eve", "a")]),
        pair("clear", [("ann", "b"), ("bob", "b"), ("eve", "a")]),
    ]
    rows, card = build_card("d", "w", gold + plain, Policy(), QualityPolicy())
    assert card["annotators"]["eve"]["flagged"] and card["annotators"]["eve"]["votes_excluded"] == 8
    assert card["annotators"]["ann"]["votes_excluded"] == 0
    assert card["quality_control"] == {"gold_pairs": 5, "flagged_annotators": ["eve"], "votes_excluded": 8}
    assert card["dropped"]["gold"] == 5 and card["dropped"]["only_flagged_annotators"] == 1
    assert card["dropped"]["no_majority"] == 1
    assert card["counts"] == {"records": 8, "kept": 1, "dropped": 7}
    assert [row["record_id"] for row in rows] == ["clear"] and rows[0]["annotators"] == ["ann", "bob"]
    # the same records with eve trusted: swing goes to b, eve-only is kept
    trusting = resolve(gold + plain, Policy())
    assert sorted(row["record_id"] for row in trusting.rows) == ["clear", "eve-only", "swing"]


def test_nothing_kept_is_a_result_that_says_why():
    rows, card = build_card("d", "w", [pair("r1", []), pair("r2", [("ann", "tie")])], Policy(), QualityPolicy())
    assert rows == [] and card["counts"]["kept"] == 0
    assert card["empty_reason"] == (
        "no pair was kept of 2 records: 1 was dropped as not_annotated (nobody has answered them yet); "
        "1 was dropped as tie (the annotators found both answers equally good)"
    )
    assert empty_reason(0, {}) == "no pair was kept: the dataset has no records (push some first)"


def test_quality_policy_is_checked():
    with pytest.raises(AnnotationError, match="--min-gold-accuracy 1.2"):
        QualityPolicy(min_gold_accuracy=1.2)
    with pytest.raises(AnnotationError, match="--min-gold-answered 0"):
        QualityPolicy(min_gold_answered=0)


def rows_of(*rows):
    return [(f"in.jsonl:{i + 1}", row) for i, row in enumerate(rows)]


def test_gold_rows_in_push_input():
    good = {"prompt": "2+2?", "completions": [{"model": "right", "content": "4"}, {"model": "wrong", "content": "5"}],
            "gold": "right"}
    parsed = parse_rows(rows_of(good))
    (made,), _ = make_pairs(parsed.rows)
    assert made.metadata["gold"] == "right"
    assert gold_side(made.metadata) == ("a" if made.answer_a.content == "4" else "b")
    bad = [
        {**good, "gold": "nobody"},
        {**good, "gold": ""},
        {**good, "completions": good["completions"] + [{"model": "third", "content": "6"}], "prompt": "3+3?"},
        {**good, "completions": [{"model": "right", "content": "4"}, {"model": "right", "content": "four"}], "prompt": "4?"},
        {**good, "metadata": {"gold": "right"}, "prompt": "5?", "gold": None},
    ]
    with pytest.raises(AnnotationError) as error:
        parse_rows(rows_of(*bad))
    message = str(error.value)
    assert "in.jsonl:1: field 'gold': 'nobody' must be the model of exactly one of the two answers (right, wrong)" in message
    assert "in.jsonl:2: field 'gold' must name the model of the better answer" in message
    assert "in.jsonl:3: field 'gold': a gold row holds exactly two different answers, not 3" in message
    assert "in.jsonl:4: field 'gold': 'right' must be the model of exactly one" in message
    assert "in.jsonl:5: field 'metadata.gold' is reserved" in message


def test_nan_in_metadata_is_named_before_anything_is_sent():
    line = '{"prompt": "p", "completions": [{"model": "m", "content": "x"}, {"model": "n", "content": "y"}], ' \
           '"metadata": {"score": NaN, "nested": {"v": [1, Infinity]}}}'
    with pytest.raises(AnnotationError) as error:
        parse_rows(rows_of(json.loads(line)))
    assert "in.jsonl:1: field 'metadata.score' is nan, which JSON cannot hold" in str(error.value)
