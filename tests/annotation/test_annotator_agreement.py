"""Agreement statistics against published worked examples and hand-computed cases."""

from collections import Counter

import pytest

from annotation.logic.agreement import (
    agreement_report,
    annotator_stats,
    cohen_kappa,
    fleiss_kappa,
    fleiss_kappa_of_units,
    krippendorff_alpha_nominal,
)


def test_krippendorff_alpha_matches_krippendorffs_worked_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers, 12 units,
    # missing values allowed; the nominal alpha given there is 0.743.
    a = [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None]
    b = [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3]
    c = [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None]
    d = [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]
    units = [[v for v in column if v is not None] for column in zip(a, b, c, d)]
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_hand_computed():
    # Units [a,a] [a,b] [b,b] [b,b]. Coincidences: o_aa = 2, o_ab = o_ba = 1, o_bb = 4;
    # n_a = 3, n_b = 5, n = 8. alpha = 1 - (n-1) * (o_ab + o_ba) / (2 n_a n_b) = 1 - 7*2/30 = 8/15.
    units = [["a", "a"], ["a", "b"], ["b", "b"], ["b", "b"]]
    assert krippendorff_alpha_nominal(units) == pytest.approx(8 / 15)


def test_krippendorff_alpha_undefined_without_pairs_or_variation():
    assert krippendorff_alpha_nominal([["a"], ["b"]]) is None  # no unit has two values
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "a"]]) is None  # no variation
    assert krippendorff_alpha_nominal([["a", "b"], ["b", "a"]]) == pytest.approx(1 - 3 * 4 / 8)


def test_fleiss_kappa_matches_the_textbook_example():
    # Fleiss (1971) as tabulated on Wikipedia: 10 subjects, 14 raters, 5 categories; kappa 0.210.
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]
    assert fleiss_kappa(table) == pytest.approx(0.2099, abs=1e-4)


def test_fleiss_kappa_of_units_needs_equal_vote_counts():
    kappa, note = fleiss_kappa_of_units([["a", "a"], ["a", "b"], ["b", "b"], ["b", "b"]])
    # P_i: 1, 0, 1, 1 -> P-bar = 0.75; shares a 3/8, b 5/8 -> P_e = 34/64; kappa = (0.75 - 34/64)/(30/64) = 7/15
    assert kappa == pytest.approx(7 / 15)
    assert "4 records with 2 votes" in note
    kappa, note = fleiss_kappa_of_units([["a", "a"], ["a", "b", "b"]])
    assert kappa is None and "different numbers of votes" in note
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 1], [2, 1]])


def test_cohen_kappa_hand_computed():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15: p_o = 0.7, p_e = 0.5*0.6 + 0.5*0.4 = 0.5 -> 0.4
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)
    assert cohen_kappa([]) is None
    assert cohen_kappa([("a", "a"), ("a", "a")]) is None  # p_e = 1


def test_agreement_report_and_annotator_stats():
    votes = {
        "r1": {"ann": "a", "bob": "a"},
        "r2": {"ann": "a", "bob": "b"},
        "r3": {"ann": "b", "bob": "b"},
        "r4": {"ann": "b", "bob": "b", "cy": "b"},
        "r5": {"cy": "tie"},
    }
    report = agreement_report(votes)
    assert report["records_with_2plus_votes"] == 4
    # pairs of votes: r1 1/1, r2 0/1, r3 1/1, r4 3/3 -> 5 of 6
    assert report["percent_agreement"] == pytest.approx(5 / 6)
    pairs = {tuple(p["annotators"]): p for p in report["pairwise_cohen_kappa"]}
    # ann vs bob on r1..r4: (a,a) (a,b) (b,b) (b,b): p_o 3/4, p_e 0.5*0.25 + 0.5*0.75 = 0.5 -> 0.5
    assert pairs[("ann", "bob")]["records"] == 4
    assert pairs[("ann", "bob")]["kappa"] == pytest.approx(0.5)
    assert pairs[("ann", "cy")]["records"] == 1
    stats = annotator_stats(votes, {"ann": Counter(submitted=4, draft=1)})
    assert stats["ann"]["responses"] == {"submitted": 4, "draft": 1, "discarded": 0}
    assert stats["ann"]["labels"] == {"a": 2, "b": 2}
    # ann's votes against others: r1 bob agree, r2 bob disagree, r3 bob agree, r4 bob+cy agree -> 4 of 5
    assert stats["ann"]["votes_compared_with_others"] == 5
    assert stats["ann"]["agreement_with_others"] == pytest.approx(4 / 5)
    assert stats["cy"]["agreement_with_others"] == pytest.approx(1.0)  # r4 only; r5 has no other vote
