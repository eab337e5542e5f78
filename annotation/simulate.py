"""A SCRIPTED STAND-IN FOR HUMAN ANNOTATORS: for demos and tests, never for real data.

`submit_scripted_responses` logs in as annotator accounts through Argilla's API (the same
login and per-user endpoints the web UI uses: `argilla_adapter.AnnotatorSession`), takes the records each
annotator's queue shows as pending, and submits a response that a script chose. Each scripted
response's rationale starts with `SCRIPTED_MARKER`, and `pull` counts those in its card, so a
dataset made this way cannot pass for human judgments.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from annotation.argilla_adapter import RESPONSES_PER_REQUEST, AnnotatorSession
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
            pair = ShownPair(record["id"], fields["prompt"], fields["answer_a"], fields["answer_b"])
            label = scripted_label(pair, annotator, choose, seed)
            answers.append((record["id"], {
                PREFERENCE: label,
                RATIONALE: f"{SCRIPTED_MARKER} {choose.__name__}, noise {annotator.noise}",
            }))
        session.submit(answers)
        done += len(answers)
    return done
