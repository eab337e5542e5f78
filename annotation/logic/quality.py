"""Annotator quality control, which Argilla does not have (pure functions).

Gold pairs are pairs whose better answer is known (push input rows with `"gold": "<model name of
the better answer>"`). They sit in the queue like any pair; the record carries the gold model in
its hidden metadata (`gold`), which annotators never see, and `model_a`/`model_b` say on which
side it was shown. Per annotator:

- `gold_answered`: submitted preferences on gold pairs; `gold_accuracy`: the share that picked
  the gold answer (a tie or "both bad" on a gold pair counts as wrong);
- `agreement_with_majority`: on the other (non-gold) pairs, how often the annotator's label equals
  the strict plurality of the *other* annotators' labels (pairs where the others have no strict
  plurality, or no votes, are not compared; `majority_compared` says how many were);
- `flagged`: at least `min_gold_answered` gold pairs answered and `gold_accuracy` below
  `min_gold_accuracy`. A flagged annotator's votes do not decide pairs (`resolve` leaves them
  out and counts them); they still appear in the agreement statistics, which describe the data
  as collected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

from annotation.errors import AnnotationError
from annotation.logic.agreement import plurality

GOLD_KEY = "gold"  # hidden record metadata: the model name of the better answer


@dataclass(frozen=True)
class QualityPolicy:
    min_gold_accuracy: float = 0.7
    min_gold_answered: int = 5

    def __post_init__(self):
        if not 0 <= self.min_gold_accuracy <= 1:
            raise AnnotationError(f"--min-gold-accuracy {self.min_gold_accuracy}: must be between 0 and 1")
        if self.min_gold_answered < 1:
            raise AnnotationError(f"--min-gold-answered {self.min_gold_answered}: must be at least 1")


def gold_side(metadata: dict) -> Optional[str]:
    """'a' or 'b': the side on which a gold pair shows its better answer; None for other pairs."""
    gold = metadata.get(GOLD_KEY)
    if gold is None:
        return None
    if metadata.get("model_a") == gold:
        return "a"
    if metadata.get("model_b") == gold:
        return "b"
    raise AnnotationError(f"a record's gold model {gold!r} is neither model_a nor model_b: the dataset was edited by hand?")


def annotator_quality(pairs: Sequence, policy: QualityPolicy, labels_of) -> Dict[str, dict]:
    """{annotator: {gold_answered, gold_correct, gold_accuracy, agreement_with_majority,
    majority_compared, flagged}} over `pairs` (AnnotatedPair); `labels_of(pair)` gives the
    submitted labels {annotator: label} of a pair."""
    stats: Dict[str, dict] = {}

    def entry(user: str) -> dict:
        return stats.setdefault(user, {"gold_answered": 0, "gold_correct": 0, "majority_compared": 0, "majority_agreed": 0})

    for pair in pairs:
        labels = labels_of(pair)
        side = gold_side(pair.metadata)
        for user, label in labels.items():
            counts = entry(user)
            if side is not None:
                counts["gold_answered"] += 1
                counts["gold_correct"] += label == side
                continue
            majority, _ = plurality([other for name, other in labels.items() if name != user])
            if majority is not None:
                counts["majority_compared"] += 1
                counts["majority_agreed"] += label == majority
    return {user: _summary(counts, policy) for user, counts in sorted(stats.items())}


def _summary(counts: dict, policy: QualityPolicy) -> dict:
    answered, compared = counts["gold_answered"], counts["majority_compared"]
    accuracy = counts["gold_correct"] / answered if answered else None
    return {
        "gold_answered": answered,
        "gold_correct": counts["gold_correct"],
        "gold_accuracy": accuracy,
        "agreement_with_majority": counts["majority_agreed"] / compared if compared else None,
        "majority_compared": compared,
        "flagged": answered >= policy.min_gold_answered and accuracy < policy.min_gold_accuracy,
    }


def flagged_annotators(quality: Dict[str, dict]) -> frozenset:
    return frozenset(user for user, stats in quality.items() if stats["flagged"])
