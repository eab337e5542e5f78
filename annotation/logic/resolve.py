"""From Argilla responses to chosen/rejected pairs (pure functions).

Only submitted responses vote; drafts and discards are counted. A record is kept when its
submitted `preference` votes reach `min_votes` and one label has a strict plurality holding at
least `min_agreement` of them; ties ("equally good") and "both bad" are dropped and counted, as
is every other reason. The winning side (A or B, as shown) is mapped back to the real answers
and their models through what the record carries. Gold pairs (quality control, `quality.py`)
score the annotators and are not written; the votes of annotators flagged by their gold accuracy
do not decide pairs. Both are counted.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from statistics import mean
from typing import Dict, List, Optional, Sequence

from annotation.errors import AnnotationError
from annotation.logic.agreement import agreement_report, annotator_stats, cohen_kappa, plurality
from annotation.logic.quality import gold_side
from annotation.logic.schema import PREFERENCE, RATIONALE, STRENGTH

DROP_REASONS = (
    "gold",  # a gold (quality-control) pair: its answer is known, it scores the annotators
    "not_annotated",  # no response at all
    "no_submitted_response",  # only drafts or discards
    "only_flagged_annotators",  # every submitted vote came from a flagged annotator
    "too_few_votes",  # fewer submitted votes than min_votes
    "no_majority",  # two labels share the most votes
    "below_min_agreement",  # the top label holds less than min_agreement of the votes
    "tie",  # the annotators found both answers equally good
    "both_bad",  # neither answer is acceptable: no preference to learn
)


@dataclass(frozen=True)
class Vote:
    user: str
    status: str  # submitted | draft | discarded
    values: dict  # question name -> value


@dataclass(frozen=True)
class JudgeSuggestion:
    value: str  # a | b | tie, as shown
    score: Optional[float]
    agent: Optional[str]


@dataclass(frozen=True)
class AnnotatedPair:
    record_id: str
    prompt: list  # messages
    answer_a: str
    answer_b: str
    metadata: dict  # carries model_a, model_b, prompt_id, source, category, ...
    votes: tuple = ()
    suggestion: Optional[JudgeSuggestion] = None


@dataclass(frozen=True)
class Policy:
    min_votes: int = 1
    min_agreement: float = 0.5

    def __post_init__(self):
        if self.min_votes < 1:
            raise AnnotationError(f"--min-votes {self.min_votes}: must be at least 1")
        if not 0 <= self.min_agreement <= 1:
            raise AnnotationError(f"--min-agreement {self.min_agreement}: must be between 0 and 1 (a share of the votes)")


@dataclass
class Resolution:
    rows: List[dict] = field(default_factory=list)
    dropped: Dict[str, int] = field(default_factory=lambda: {reason: 0 for reason in DROP_REASONS})
    responses: Counter = field(default_factory=Counter)  # by status
    scripted_responses: int = 0
    majority: Dict[str, Optional[str]] = field(default_factory=dict)  # record id -> plurality label
    excluded_votes: Counter = field(default_factory=Counter)  # flagged annotator -> submitted votes left out


def submitted_labels(pair: AnnotatedPair) -> Dict[str, str]:
    return {
        vote.user: vote.values[PREFERENCE]
        for vote in pair.votes
        if vote.status == "submitted" and vote.values.get(PREFERENCE) is not None
    }


def resolve(
    pairs: Sequence[AnnotatedPair],
    policy: Policy,
    scripted_marker: Optional[str] = None,
    excluded_annotators: frozenset = frozenset(),
) -> Resolution:
    """Resolve every pair; the votes of `excluded_annotators` (flagged) do not count, and are counted."""
    result = Resolution()
    for pair in pairs:
        for vote in pair.votes:
            result.responses[vote.status] += 1
            rationale = vote.values.get(RATIONALE) or ""
            if scripted_marker and vote.status == "submitted" and str(rationale).startswith(scripted_marker):
                result.scripted_responses += 1
        all_labels = submitted_labels(pair)
        labels = {user: label for user, label in all_labels.items() if user not in excluded_annotators}
        for user in all_labels.keys() - labels.keys():
            result.excluded_votes[user] += 1
        label, share = plurality(list(labels.values()))
        result.majority[pair.record_id] = label
        if gold_side(pair.metadata) is not None:
            result.dropped["gold"] += 1
            continue
        if all_labels and not labels:
            result.dropped["only_flagged_annotators"] += 1
            continue
        reason = _drop_reason(pair, labels, label, share, policy)
        if reason:
            result.dropped[reason] += 1
        else:
            result.rows.append(_preference_row(pair, labels, label, share))
    return result


def _drop_reason(pair: AnnotatedPair, labels: dict, label: Optional[str], share: float, policy: Policy) -> Optional[str]:
    if not pair.votes:
        return "not_annotated"
    if not labels:
        return "no_submitted_response"
    if len(labels) < policy.min_votes:
        return "too_few_votes"
    if label is None:
        return "no_majority"
    if share < policy.min_agreement:
        return "below_min_agreement"
    if label in ("tie", "both_bad"):
        return label
    return None


def _preference_row(pair: AnnotatedPair, labels: dict, label: str, share: float) -> dict:
    """TRL's conversational preference row, with where it came from."""
    chosen_side, rejected_side = ("a", "b") if label == "a" else ("b", "a")
    answers = {"a": pair.answer_a, "b": pair.answer_b}
    models = {"a": pair.metadata.get("model_a"), "b": pair.metadata.get("model_b")}
    winners = [v for v in pair.votes if v.status == "submitted" and labels.get(v.user) == label]
    strengths = [v.values[STRENGTH] for v in winners if v.values.get(STRENGTH) is not None]
    suggestion = pair.suggestion
    return {
        "prompt": [dict(m) for m in pair.prompt],
        "chosen": [{"role": "assistant", "content": answers[chosen_side]}],
        "rejected": [{"role": "assistant", "content": answers[rejected_side]}],
        "record_id": pair.record_id,
        "prompt_id": str(pair.metadata.get("prompt_id", "")),
        "source": pair.metadata.get("source"),
        "category": pair.metadata.get("category"),
        "chosen_model": models[chosen_side],
        "rejected_model": models[rejected_side],
        "chosen_was_shown_as": chosen_side.upper(),
        "annotators": sorted(labels),
        "votes": len(labels),
        "agreement": share,
        "strength": mean(strengths) if strengths else None,
        "aspect_ratings": json.dumps(_aspect_ratings(winners, chosen_side), sort_keys=True),
        "rationales": [str(v.values[RATIONALE]) for v in winners if v.values.get(RATIONALE)],
        "judge_verdict": _judge_verdict(suggestion, chosen_side),
        "judge_score": suggestion.score if suggestion else None,
        "judge_agent": suggestion.agent if suggestion else None,
    }


def _aspect_ratings(votes: Sequence[Vote], chosen_side: str) -> dict:
    """{aspect: {"chosen": mean, "rejected": mean}} from the `<aspect>_a` / `<aspect>_b` ratings."""
    ratings: Dict[str, Dict[str, list]] = {}
    for vote in votes:
        for name, value in vote.values.items():
            if not isinstance(value, (int, float)) or name == STRENGTH or not name.endswith(("_a", "_b")):
                continue
            aspect, side = name[:-2], name[-1]
            role = "chosen" if side == chosen_side else "rejected"
            ratings.setdefault(aspect, {"chosen": [], "rejected": []})[role].append(value)
    return {aspect: {role: mean(v) if v else None for role, v in by_role.items()} for aspect, by_role in ratings.items()}


def _judge_verdict(suggestion: Optional[JudgeSuggestion], chosen_side: str) -> Optional[str]:
    if suggestion is None:
        return None
    if suggestion.value == "tie":
        return "tie"
    return "chosen" if suggestion.value == chosen_side else "rejected"


# ---------------------------------------------------------------- agreement


def human_agreement(pairs: Sequence[AnnotatedPair]) -> dict:
    votes = {pair.record_id: submitted_labels(pair) for pair in pairs}
    statuses: Dict[str, Counter] = {}
    for pair in pairs:
        for vote in pair.votes:
            statuses.setdefault(vote.user, Counter())[vote.status] += 1
    report = agreement_report({rid: by_user for rid, by_user in votes.items() if by_user})
    report["annotators"] = annotator_stats(votes, statuses)
    return report


def judge_human_agreement(pairs: Sequence[AnnotatedPair], majority: Dict[str, Optional[str]]) -> Optional[dict]:
    """How often the LLM judge's suggestion matches the annotators' plurality label (None when
    no suggestion was shown). Records the humans called "both bad" have no counterpart among the
    judge's verdicts (a, b, tie) and are counted apart, as are records without a plurality."""
    shown = [pair for pair in pairs if pair.suggestion is not None]
    if not shown:
        return None
    compared, both_bad, undecided = [], 0, 0
    for pair in shown:
        human = majority.get(pair.record_id)
        if human is None:
            undecided += 1
        elif human == "both_bad":
            both_bad += 1
        else:
            compared.append((pair.suggestion.value, human))
    return {
        "records_with_suggestion": len(shown),
        "compared": len(compared),
        "excluded_human_both_bad": both_bad,
        "excluded_no_human_plurality": undecided,
        "accuracy": sum(1 for j, h in compared if j == h) / len(compared) if compared else None,
        "cohen_kappa": cohen_kappa(compared),
    }
