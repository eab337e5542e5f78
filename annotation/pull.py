"""`python -m annotation pull`: every response, resolved into TRL's conversational preference
dataset (`save_to_disk`) plus `card.json` with the counts, the agreement, the annotators'
quality (gold accuracy, agreement with the majority, flagged) and the policy.

Nothing kept is a result, not an error: the dataset is then empty and the card says why.
`--out` must be a new or empty directory, or an earlier pull (which is replaced as a whole, never
mixed with the new files); anything else is refused before a record is read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict

from annotation import argilla_adapter
from annotation.connection import lookup
from annotation.errors import AnnotationError
from annotation.logic import schema
from annotation.logic.quality import QualityPolicy, annotator_quality, flagged_annotators
from annotation.logic.resolve import (
    AnnotatedPair,
    JudgeSuggestion,
    Policy,
    Vote,
    human_agreement,
    judge_human_agreement,
    resolve,
    submitted_labels,
)
from annotation.simulate import SCRIPTED_MARKER

CARD_FORMAT = "TRL conversational preference: prompt (messages), chosen and rejected (one assistant message)"
WHY_DROPPED = {
    "gold": "gold pairs score annotators and are not written",
    "not_annotated": "nobody has answered them yet",
    "no_submitted_response": "they hold only drafts or discards",
    "only_flagged_annotators": "only flagged annotators voted on them",
    "too_few_votes": "fewer submitted votes than --min-votes",
    "no_majority": "two labels share the most votes",
    "below_min_agreement": "the top label holds less than --min-agreement of the votes",
    "tie": "the annotators found both answers equally good",
    "both_bad": "the annotators found both answers bad",
}


def annotated_pair(record: dict, question_names: Dict[str, str], usernames: Dict[str, str]) -> AnnotatedPair:
    """One record as the Argilla API returns it (`RecordModel.model_dump()`) -> AnnotatedPair."""
    fields = record.get("fields") or {}
    missing = [name for name in (schema.PROMPT_FIELD, *schema.ANSWER_FIELDS) if not fields.get(name)]
    if missing:
        raise AnnotationError(f"record {record.get('external_id')}: field(s) {', '.join(missing)} are empty")
    metadata = argilla_adapter.record_metadata(record)
    votes = tuple(
        Vote(
            user=usernames.get(str(response["user_id"]), str(response["user_id"])),
            status=str(response["status"].value if hasattr(response["status"], "value") else response["status"]),
            values={name: (value or {}).get("value") for name, value in (response.get("values") or {}).items()},
        )
        for response in record.get("responses") or ()
    )
    suggestion = None
    for item in record.get("suggestions") or ():
        if question_names.get(str(item.get("question_id"))) == schema.PREFERENCE or item.get("question_name") == schema.PREFERENCE:
            suggestion = JudgeSuggestion(item["value"], item.get("score"), item.get("agent"))
    return AnnotatedPair(
        record_id=argilla_adapter.record_key(record),
        prompt=[{"role": m["role"], "content": m["content"]} for m in fields[schema.PROMPT_FIELD]],
        answer_a=fields["answer_a"],
        answer_b=fields["answer_b"],
        metadata=metadata,
        votes=votes,
        suggestion=suggestion,
    )


def fetch_pairs(client, dataset) -> list:
    question_names = {str(q.id): q.name for q in dataset.settings.questions}
    usernames = {str(user.id): user.username for user in client.users}
    return [annotated_pair(record, question_names, usernames) for record in argilla_adapter.record_dicts(client, dataset)]


def preference_features():
    import datasets

    message = {"role": datasets.Value("string"), "content": datasets.Value("string")}
    text = datasets.Value("string")
    return datasets.Features(
        {
            "prompt": [message],
            "chosen": [message],
            "rejected": [message],
            "record_id": text,
            "prompt_id": text,
            "source": text,
            "category": text,
            "chosen_model": text,
            "rejected_model": text,
            "chosen_was_shown_as": text,
            "annotators": [text],
            "votes": datasets.Value("int32"),
            "agreement": datasets.Value("float64"),
            "strength": datasets.Value("float64"),
            "aspect_ratings": text,
            "rationales": [text],
            "judge_verdict": text,
            "judge_score": datasets.Value("float64"),
            "judge_agent": text,
        }
    )


def build_card(
    dataset_name: str, workspace: str, pairs: list, policy: Policy, quality_policy: QualityPolicy = QualityPolicy()
) -> tuple:
    """(preference rows, card) for the records of one dataset (pure)."""
    quality = annotator_quality(pairs, quality_policy, submitted_labels)
    flagged = flagged_annotators(quality)
    resolution = resolve(pairs, policy, scripted_marker=SCRIPTED_MARKER, excluded_annotators=flagged)
    for user, stats in quality.items():
        stats["votes_excluded"] = resolution.excluded_votes.get(user, 0)
    card = {
        "dataset": dataset_name,
        "workspace": workspace,
        "format": CARD_FORMAT,
        "policy": {
            "votes": "submitted responses only; drafts and discards are counted, not used",
            "min_votes": policy.min_votes,
            "min_agreement": policy.min_agreement,
            "resolution": "strict plurality label; ties (equally good) and both_bad dropped",
            "min_gold_accuracy": quality_policy.min_gold_accuracy,
            "min_gold_answered": quality_policy.min_gold_answered,
            "quality_control": "annotators with at least min_gold_answered gold pairs answered and a gold accuracy "
            "below min_gold_accuracy are flagged; their votes do not decide pairs; gold pairs are not written",
        },
        "counts": {"records": len(pairs), "kept": len(resolution.rows), "dropped": sum(resolution.dropped.values())},
        "dropped": resolution.dropped,
        "annotators": quality,
        "quality_control": {
            "gold_pairs": resolution.dropped["gold"],
            "flagged_annotators": sorted(flagged),
            "votes_excluded": sum(resolution.excluded_votes.values()),
        },
        "responses": {s: resolution.responses.get(s, 0) for s in ("submitted", "draft", "discarded")},
        "scripted_responses": resolution.scripted_responses,
        "agreement": human_agreement(pairs),
        "judge_human_agreement": judge_human_agreement(pairs, resolution.majority),
    }
    if not resolution.rows:
        card["empty_reason"] = empty_reason(len(pairs), resolution.dropped)
    if resolution.scripted_responses:
        card["warning"] = (
            f"{resolution.scripted_responses} submitted responses came from the scripted stand-in for "
            "annotators (annotation.simulate), not from people: not human preference data"
        )
    return resolution.rows, card


def empty_reason(records: int, dropped: dict) -> str:
    """Why a pull kept nothing, in words."""
    if records == 0:
        return "no pair was kept: the dataset has no records (push some first)"
    reasons = [f"{count} {'was' if count == 1 else 'were'} dropped as {name} ({WHY_DROPPED[name]})"
               for name, count in sorted(dropped.items(), key=lambda item: -item[1]) if count]
    return f"no pair was kept of {records} records: " + "; ".join(reasons)


def check_out_dir(out_dir: Path) -> None:
    """--out must be new, empty, or an earlier pull (replaced as a whole); refused otherwise."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise AnnotationError(f"--out {out_dir} is a file; give a directory")
    if not any(out_dir.iterdir()):
        return
    card = out_dir / "card.json"
    try:
        earlier = json.loads(card.read_text()).get("format") == CARD_FORMAT
    except (OSError, ValueError, AttributeError):
        earlier = False
    if not earlier:
        raise AnnotationError(
            f"--out {out_dir} is not empty and is not an earlier pull (no card.json of `annotation pull`); "
            "choose a new or empty directory"
        )


def save_pull(rows: list, card: dict, out_dir: Path) -> None:
    """Write the dataset and its card next to --out, then put them in its place in one rename
    (an earlier pull there is replaced as a whole)."""
    import datasets

    features = preference_features()
    if rows:
        table = datasets.Dataset.from_list(rows, features=features)
    else:
        table = datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}.pulling")
    shutil.rmtree(staging, ignore_errors=True)
    table.save_to_disk(str(staging), num_shards=1 if not rows else None)  # 0 shards would not load again
    (staging / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    if out_dir.exists():
        replaced = out_dir.with_name(f".{out_dir.name}.replaced")
        shutil.rmtree(replaced, ignore_errors=True)
        out_dir.rename(replaced)
        staging.rename(out_dir)
        shutil.rmtree(replaced)
    else:
        staging.rename(out_dir)


def pull_preferences(
    client, dataset_name: str, workspace: str, out_dir: Path, policy: Policy, quality_policy: QualityPolicy = QualityPolicy()
) -> dict:
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    dataset = lookup(client.datasets, name=dataset_name, workspace=workspace)
    if dataset is None:
        raise AnnotationError(f"dataset {workspace}/{dataset_name} does not exist")
    rows, card = build_card(dataset_name, workspace, fetch_pairs(client, dataset), policy, quality_policy)
    save_pull(rows, card, out_dir)
    return card
