"""`python -m annotation pull`: every response, resolved into TRL's conversational preference
dataset (`save_to_disk`) plus `card.json` with the counts, the agreement and the policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

from annotation import schema
from annotation.connection import lookup
from annotation.errors import AnnotationError
from annotation.resolve import (
    AnnotatedPair,
    JudgeSuggestion,
    Policy,
    Vote,
    human_agreement,
    judge_human_agreement,
    resolve,
)
from annotation.simulate import SCRIPTED_MARKER

LIST_PAGE = 1000


def annotated_pair(record: dict, question_names: Dict[str, str], usernames: Dict[str, str]) -> AnnotatedPair:
    """One record as the Argilla API returns it (`RecordModel.model_dump()`) -> AnnotatedPair."""
    fields = record.get("fields") or {}
    missing = [name for name in (schema.PROMPT_FIELD, *schema.ANSWER_FIELDS) if not fields.get(name)]
    if missing:
        raise AnnotationError(f"record {record.get('external_id')}: field(s) {', '.join(missing)} are empty")
    metadata = record.get("metadata") or {}
    if isinstance(metadata, list):
        metadata = {item["name"]: item["value"] for item in metadata}
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
        record_id=str(record.get("external_id") or record.get("id")),
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
    pairs, offset = [], 0
    while True:
        page = client.api.records.list(
            dataset.id, offset=offset, limit=LIST_PAGE, with_responses=True, with_suggestions=True
        )
        pairs.extend(annotated_pair(model.model_dump(), question_names, usernames) for model in page)
        if len(page) < LIST_PAGE:
            return pairs
        offset += LIST_PAGE


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


def build_card(dataset_name: str, workspace: str, pairs: list, policy: Policy) -> tuple:
    """(preference rows, card) for the records of one dataset (pure)."""
    resolution = resolve(pairs, policy, scripted_marker=SCRIPTED_MARKER)
    card = {
        "dataset": dataset_name,
        "workspace": workspace,
        "format": "TRL conversational preference: prompt (messages), chosen and rejected (one assistant message)",
        "policy": {
            "votes": "submitted responses only; drafts and discards are counted, not used",
            "min_votes": policy.min_votes,
            "min_agreement": policy.min_agreement,
            "resolution": "strict plurality label; ties (equally good) and both_bad dropped",
        },
        "counts": {"records": len(pairs), "kept": len(resolution.rows), "dropped": sum(resolution.dropped.values())},
        "dropped": resolution.dropped,
        "responses": {s: resolution.responses.get(s, 0) for s in ("submitted", "draft", "discarded")},
        "scripted_responses": resolution.scripted_responses,
        "agreement": human_agreement(pairs),
        "judge_human_agreement": judge_human_agreement(pairs, resolution.majority),
    }
    if resolution.scripted_responses:
        card["warning"] = (
            f"{resolution.scripted_responses} submitted responses came from the scripted stand-in for "
            "annotators (annotation.simulate), not from people: not human preference data"
        )
    return resolution.rows, card


def pull_preferences(client, dataset_name: str, workspace: str, out_dir: Path, policy: Policy) -> dict:
    import datasets

    dataset = lookup(client.datasets, name=dataset_name, workspace=workspace)
    if dataset is None:
        raise AnnotationError(f"dataset {workspace}/{dataset_name} does not exist")
    rows, card = build_card(dataset_name, workspace, fetch_pairs(client, dataset), policy)
    out_dir = Path(out_dir)
    datasets.Dataset.from_list(rows, features=preference_features()).save_to_disk(str(out_dir))
    (out_dir / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    return card
