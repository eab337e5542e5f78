"""A SCRIPTED STAND-IN FOR HUMAN ANNOTATORS: for demos and tests, never for real data.

`submit_scripted_responses` logs in as annotator accounts through Argilla's API (the same
login and per-user endpoints the web UI uses: `argilla_adapter.AnnotatorSession`), takes the records each
annotator's queue shows as pending, and submits a response that a script chose. Each scripted
response's rationale starts with `SCRIPTED_MARKER`, and `pull` counts those in its card, so a
dataset made this way cannot pass for human judgments. `python -m annotation scripted-annotators`
runs them from the command line (`scripted_accounts`, `prefer_model`), so the annotation path can
be tried with nobody to annotate.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from annotation import argilla_adapter
from annotation.argilla_adapter import RESPONSES_PER_REQUEST, AnnotatorSession
from annotation.connection import lookup
from annotation.errors import AnnotationError
from annotation.logic.schema import LABELS, PREFERENCE, RATIONALE

SCRIPTED_MARKER = "[scripted annotator]"


@dataclass(frozen=True)
class ScriptedAnnotator:
    username: str
    password: str
    noise: float = 0.1  # share of records answered with a label drawn at random


@dataclass(frozen=True)
class ShownPair:
    """What an annotator sees: the conversation and the answers as A and B."""

    record_id: str  # the record's external id (the pair's id in push's input): stable across servers
    prompt: list
    answer_a: str
    answer_b: str


Chooser = Callable[[ShownPair], str]


def prefer_longer_answer(pair: ShownPair) -> str:
    """A fixed, visible rule (not a judgment of quality): the longer answer wins; equal is a tie."""
    if len(pair.answer_a) == len(pair.answer_b):
        return "tie"
    return "a" if len(pair.answer_a) > len(pair.answer_b) else "b"


def prefer_model(model: str, models_by_record: dict) -> Chooser:
    """The answer written by `model` wins (e.g. `chosen`: the chosen answer of the preference rows
    `from-preferences` converted), read from the records' hidden `model_a`/`model_b` with the
    owner's key (`answer_models`); a pair without that model is a tie."""

    def choose(pair: ShownPair) -> str:
        models = models_by_record.get(pair.record_id, {})
        return "a" if models.get("a") == model else "b" if models.get("b") == model else "tie"

    choose.__name__ = f"prefer_model({model})"  # the rule's name in each response's rationale
    return choose


def answer_models(client, dataset_name: str, workspace: str) -> dict:
    """{record external id: {"a": model_a, "b": model_b}} of a dataset, read with the owner's client."""
    dataset = lookup(client.datasets, dataset_name, workspace=workspace)
    if dataset is None:
        raise AnnotationError(f"dataset {workspace}/{dataset_name} does not exist (push it first)")
    models = {}
    for record in argilla_adapter.record_dicts(client, dataset):
        metadata = argilla_adapter.record_metadata(record)
        models[argilla_adapter.record_key(record)] = {"a": metadata.get("model_a"), "b": metadata.get("model_b")}
    return models


def scripted_accounts(owner_api_key: str, count: int, noise: float) -> list:
    """`count` scripted annotator accounts, `scripted-annotator-N`, each with a password derived from
    the owner's API key: secret like the key, and the same on every run (the accounts are reused)."""
    names = [f"scripted-annotator-{i + 1}" for i in range(count)]
    return [ScriptedAnnotator(name, hmac.new(owner_api_key.encode(), name.encode(), hashlib.sha256).hexdigest()[:32], noise)
            for name in names]


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
            session = AnnotatorSession(http, annotator.username, annotator.password)
            dataset_id = session.dataset_id(dataset, workspace)
            submitted[annotator.username] = _answer_queue(session, dataset_id, annotator, choose, seed,
                                                          max_records_per_annotator)
    return submitted


def _answer_queue(session: AnnotatorSession, dataset_id, annotator, choose, seed, limit) -> int:
    done = 0
    while limit is None or done < limit:
        page_size = RESPONSES_PER_REQUEST if limit is None else min(RESPONSES_PER_REQUEST, limit - done)
        records = session.pending_records(dataset_id, page_size)
        if not records:
            return done
        answers = []
        for record in records:
            fields = record["fields"]
            pair = ShownPair(argilla_adapter.record_key(record), fields["prompt"], fields["answer_a"], fields["answer_b"])
            label = scripted_label(pair, annotator, choose, seed)
            answers.append((record["id"], {
                PREFERENCE: label,
                RATIONALE: f"{SCRIPTED_MARKER} {choose.__name__}, noise {annotator.noise}",
            }))
        session.submit(answers)
        done += len(answers)
    return done
