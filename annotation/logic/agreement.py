"""Inter-annotator agreement on nominal labels (pure functions).

- Krippendorff's alpha (nominal): any number of annotators per record, missing votes allowed;
  the headline number, because Argilla's overlap gives records different numbers of votes.
- Fleiss' kappa: when every record with two or more votes has the same number of them.
- Cohen's kappa: for each pair of annotators, on the records both answered.
All return None where the statistic is undefined (too few votes, or no variation at all).
`plurality` is the label with strictly the most votes: how `resolve` decides a pair and `quality`
finds the others' majority.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import Dict, Hashable, Iterable, List, Optional, Sequence, Tuple

Label = Hashable


def plurality(labels: Sequence[str]) -> tuple:
    """(the label with strictly the most votes or None, its share of the votes)."""
    if not labels:
        return None, 0.0
    ranked = Counter(labels).most_common()
    top, count = ranked[0]
    if len(ranked) > 1 and ranked[1][1] == count:
        return None, count / len(labels)
    return top, count / len(labels)


def krippendorff_alpha_nominal(units: Iterable[Sequence[Label]]) -> Optional[float]:
    """alpha = 1 - D_o / D_e from the coincidence matrix (Krippendorff 2011, "Computing
    Krippendorff's Alpha-Reliability"); units with fewer than two values are not pairable."""
    coincidences: Counter = Counter()
    for values in units:
        m = len(values)
        if m < 2:
            continue
        counts = Counter(values)
        for c in counts:
            for k in counts:
                pairs = counts[c] * (counts[k] - 1) if c == k else counts[c] * counts[k]
                coincidences[(c, k)] += pairs / (m - 1)
    totals: Counter = Counter()
    for (c, _), value in coincidences.items():
        totals[c] += value
    n = sum(totals.values())
    if n <= 1:
        return None
    observed = sum(v for (c, k), v in coincidences.items() if c != k)
    expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k) / (n - 1)
    if expected == 0:
        return None  # every value identical: agreement cannot be told from chance
    return 1 - observed / expected


def fleiss_kappa(table: Sequence[Sequence[int]]) -> Optional[float]:
    """Fleiss' kappa from a table of counts: table[i][j] = raters who put item i in category j,
    every row summing to the same number of raters n >= 2."""
    if not table:
        return None
    n = sum(table[0])
    if n < 2 or any(sum(row) != n for row in table):
        raise ValueError("every item needs the same number (>= 2) of ratings for Fleiss' kappa")
    items = len(table)
    per_item = [(sum(c * c for c in row) - n) / (n * (n - 1)) for row in table]
    p_bar = sum(per_item) / items
    shares = [sum(row[j] for row in table) / (items * n) for j in range(len(table[0]))]
    p_e = sum(p * p for p in shares)
    if p_e == 1:
        return None
    return (p_bar - p_e) / (1 - p_e)


def fleiss_kappa_of_units(units: Iterable[Sequence[Label]]) -> Tuple[Optional[float], str]:
    """Fleiss' kappa of the units with two or more votes, if they all have the same count."""
    pairable = [list(values) for values in units if len(values) >= 2]
    if not pairable:
        return None, "no record has two or more submitted votes"
    sizes = {len(values) for values in pairable}
    if len(sizes) > 1:
        return None, f"records have different numbers of votes ({sorted(sizes)}); see Krippendorff's alpha"
    categories = sorted({v for values in pairable for v in values}, key=str)
    table = [[values.count(c) for c in categories] for values in pairable]
    return fleiss_kappa(table), f"{len(pairable)} records with {sizes.pop()} votes each"


def cohen_kappa(pairs: Sequence[Tuple[Label, Label]]) -> Optional[float]:
    """Cohen's kappa of two raters over the items both rated: (p_o - p_e) / (1 - p_e)."""
    if not pairs:
        return None
    n = len(pairs)
    p_o = sum(1 for x, y in pairs if x == y) / n
    first, second = Counter(x for x, _ in pairs), Counter(y for _, y in pairs)
    p_e = sum(first[c] * second[c] for c in first) / (n * n)
    if p_e == 1:
        return None
    return (p_o - p_e) / (1 - p_e)


def agreement_report(votes: Dict[str, Dict[str, Label]]) -> dict:
    """Agreement over submitted labels: votes[record id][annotator] = label."""
    units = [list(by_user.values()) for by_user in votes.values()]
    fleiss, fleiss_note = fleiss_kappa_of_units(units)
    pairable = [u for u in units if len(u) >= 2]
    return {
        "records_with_2plus_votes": len(pairable),
        "krippendorff_alpha": krippendorff_alpha_nominal(units),
        "fleiss_kappa": fleiss,
        "fleiss_kappa_note": fleiss_note,
        "percent_agreement": _pairwise_agreement(pairable),
        "pairwise_cohen_kappa": _pairwise_cohen(votes),
    }


def _pairwise_agreement(units: List[list]) -> Optional[float]:
    """The share of agreeing pairs of votes among all pairs of votes on the same record."""
    agreeing = total = 0
    for values in units:
        for x, y in combinations(values, 2):
            total += 1
            agreeing += x == y
    return agreeing / total if total else None


def _pairwise_cohen(votes: Dict[str, Dict[str, Label]]) -> list:
    annotators = sorted({user for by_user in votes.values() for user in by_user})
    report = []
    for first, second in combinations(annotators, 2):
        shared = [(v[first], v[second]) for v in votes.values() if first in v and second in v]
        if shared:
            report.append({"annotators": [first, second], "records": len(shared), "kappa": cohen_kappa(shared)})
    return report


def annotator_stats(votes: Dict[str, Dict[str, Label]], statuses: Dict[str, Counter]) -> dict:
    """Per annotator: responses by status, labels given, and how often they agree with the others.

    `statuses[annotator]` counts that annotator's responses by status (submitted, draft, discarded)."""
    stats = {}
    for user in sorted(set(statuses) | {u for by_user in votes.values() for u in by_user}):
        labels = Counter(str(by_user[user]) for by_user in votes.values() if user in by_user)
        agreeing = compared = 0
        for by_user in votes.values():
            if user not in by_user:
                continue
            for other, label in by_user.items():
                if other != user:
                    compared += 1
                    agreeing += label == by_user[user]
        stats[user] = {
            "responses": {s: statuses.get(user, Counter()).get(s, 0) for s in ("submitted", "draft", "discarded")},
            "labels": dict(sorted(labels.items())),
            "votes_compared_with_others": compared,
            "agreement_with_others": agreeing / compared if compared else None,
        }
    return stats
