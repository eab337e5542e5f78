"""A SCRIPTED STAND-IN FOR HUMAN ANNOTATORS: for demos and tests, never for real data.

`submit_scripted_responses` logs in as annotator accounts through Argilla's API (the same
`/api/v1/token` login and `/api/v1/me/...` endpoints the web UI uses), takes the records each
annotator's queue shows as pending, and submits a response that a script chose. Each scripted
response's rationale starts with `SCRIPTED_MARKER`, and `pull` counts those in its card, so a
dataset made this way cannot pass for human judgments.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from annotation.errors import AnnotationError
from annotation.logic.schema import LABELS, PREFERENCE, RATIONALE

SCRIPTED_MARKER = "[scripted annotator]"
RESPONSES_PER_REQUEST = 100  # argilla's most responses per bulk request


@dataclass(frozen=True)
class ScriptedAnnotator:
    username: str
    password: str
    noise: float = 0.1  # share of records answered with a label drawn at random


@dataclass(frozen=True)
class ShownPair:
    """What an annotator sees: the conversation and the answers as A and B."""

    record_id: str
    prompt: list
    answer_a: str
    answer_b: str


Chooser = Callable[[ShownPair], str]


def prefer_longer_answer(pair: ShownPair) -> str:
    """A fixed, visible rule (not a judgment of quality): the longer answer wins; equal is a tie."""
    if len(pair.answer_a) == len(pair.answer_b):
        return "tie"
    return "a" if len(pair.answer_a) > len(pair.answer_b) else "b"


def scripted_label(pair: ShownPair, annotator: ScriptedAnnotator, choose: Chooser, seed: int) -> str:
    """The rule's label, replaced by a random one for a `noise` share of records (stable per
    annotator and record, so a re-run gives the same answers)."""
    rng = random.Random(f"{seed}:{annotator.username}:{pair.record_id}")
    if rng.random() < annotator.noise:
        return rng.choice(sorted(LABELS))
    return choose(pair)


def submit_scripted_responses(
    api_url: str,
    dataset: str,
    workspace: str,
    annotators: Sequence[ScriptedAnnotator],
    choose: Chooser = prefer_longer_answer,
    seed: int = 0,
    max_records_per_annotator: Optional[int] = None,
) -> dict:
    """Each annotator answers its pending queue; returns {username: number of responses submitted}."""
    import httpx

    submitted = {}
    with httpx.Client(base_url=api_url.rstrip("/"), timeout=120) as http:
        for annotator in annotators:
            headers = {"Authorization": f"Bearer {_login(http, annotator)}"}
            dataset_id = _dataset_id(http, headers, dataset, workspace)
            submitted[annotator.username] = _answer_queue(
                http, headers, dataset_id, annotator, choose, seed, max_records_per_annotator
            )
    return submitted


def _login(http, annotator: ScriptedAnnotator) -> str:
    response = http.post("/api/v1/token", data={"username": annotator.username, "password": annotator.password})
    if response.status_code != 201:
        raise AnnotationError(f"cannot log in as {annotator.username!r}: HTTP {response.status_code}")
    return response.json()["access_token"]


def _dataset_id(http, headers: dict, dataset: str, workspace: str) -> str:
    workspaces = {w["id"]: w["name"] for w in _ok(http.get("/api/v1/me/workspaces", headers=headers))["items"]}
    for item in _ok(http.get("/api/v1/me/datasets", headers=headers))["items"]:
        if item["name"] == dataset and workspaces.get(item["workspace_id"]) == workspace:
            return item["id"]
    raise AnnotationError(f"dataset {workspace}/{dataset} is not visible to this annotator (not a workspace member?)")


def _answer_queue(http, headers, dataset_id, annotator, choose, seed, limit) -> int:
    # The web UI's queue: records this user has not answered, that are not yet complete.
    queue = {
        "filters": {
            "and": [
                {"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": ["pending"]},
                {"type": "terms", "scope": {"entity": "record", "property": "status"}, "values": ["pending"]},
            ]
        }
    }
    done = 0
    while limit is None or done < limit:
        page_size = RESPONSES_PER_REQUEST if limit is None else min(RESPONSES_PER_REQUEST, limit - done)
        found = _ok(
            http.post(
                f"/api/v1/me/datasets/{dataset_id}/records/search",
                headers=headers,
                json=queue,
                params={"limit": page_size},
            )
        )
        if not found["items"]:
            return done
        items = []
        for item in found["items"]:
            record = item["record"]
            fields = record["fields"]
            pair = ShownPair(record["id"], fields["prompt"], fields["answer_a"], fields["answer_b"])
            label = scripted_label(pair, annotator, choose, seed)
            values = {
                PREFERENCE: {"value": label},
                RATIONALE: {"value": f"{SCRIPTED_MARKER} {choose.__name__}, noise {annotator.noise}"},
            }
            items.append({"record_id": record["id"], "status": "submitted", "values": values})
        result = _ok(http.post("/api/v1/me/responses/bulk", headers=headers, json={"items": items}))
        errors = [entry["error"] for entry in result["items"] if entry.get("error")]
        if errors:
            raise AnnotationError(f"Argilla refused scripted responses of {annotator.username!r}: {errors[0]}")
        done += len(items)
    return done


def _ok(response) -> dict:
    if response.status_code >= 400:
        raise AnnotationError(f"{response.request.method} {response.request.url.path}: HTTP {response.status_code} {response.text[:300]}")
    return response.json()
