"""`python -m annotation push`: create or update the Argilla dataset of A/B pairs.

Pushing is idempotent and never touches annotated work: records are found again by their
deterministic ids; a record that holds any response (submitted, draft or discarded) is left
exactly as it is; an unannotated record is re-sent only when its content (or a new suggestion)
differs. `plan_push` decides that as a pure function; `push_pairs` does the talking.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from annotation import argilla_adapter
from annotation.connection import lookup
from annotation.errors import AnnotationError
from annotation.logic import schema
from annotation.logic.pairs import PairRecord

RECORDS_PER_BATCH = argilla_adapter.RECORDS_PER_UPSERT


class PushInterrupted(AnnotationError):
    """Ctrl-C during a push: says what was sent, and that running the same push again is safe."""

    exit_code = 130


@dataclass(frozen=True)
class ExistingRecord:
    annotated: bool  # holds a response of any status
    fields: dict
    metadata: dict
    has_preference_suggestion: bool


@dataclass(frozen=True)
class Suggestion:
    """An LLM judge's verdict on the pair as shown (A and B as the annotators see them)."""

    value: str  # a | b | tie
    score: Optional[float]
    agent: str


@dataclass
class PushPlan:
    to_create: list = field(default_factory=list)
    to_update: list = field(default_factory=list)
    unchanged: int = 0
    skipped_annotated: int = 0


@dataclass
class PushReport:
    dataset: str
    workspace: str
    pairs: int
    created: int
    updated: int
    unchanged: int
    skipped_annotated: int
    suggestions: int
    judge_failures: int  # pairs sent that the judge gave no verdict on
    a_is_first_input_answer: int  # of the pairs pushed: the A/B coin flip, for balance
    retries: int
    notes: list = field(default_factory=list)

    def lines(self) -> list:
        return [
            f"dataset {self.workspace}/{self.dataset}: {self.pairs} pairs in the input",
            f"  created {self.created}, updated {self.updated}, unchanged {self.unchanged}, "
            f"left alone because already annotated {self.skipped_annotated}",
            f"  judge suggestions attached: {self.suggestions} (no verdict: {self.judge_failures}); "
            f"A is the input's first answer in {self.a_is_first_input_answer} of the pairs sent; "
            f"retried batches: {self.retries}",
        ] + [f"  note: {note}" for note in self.notes]


def record_fields(pair: PairRecord) -> dict:
    return {
        schema.PROMPT_FIELD: [dict(message) for message in pair.prompt],
        "answer_a": pair.answer_a.content,
        "answer_b": pair.answer_b.content,
    }


def plan_push(pairs: Sequence[PairRecord], existing: dict, judged: bool) -> PushPlan:
    """Which pairs to create, which to update, which to leave alone (pure)."""
    plan = PushPlan()
    for pair in pairs:
        found = existing.get(pair.id)
        if found is None:
            plan.to_create.append(pair)
        elif found.annotated:
            plan.skipped_annotated += 1
        elif (
            found.fields != record_fields(pair)
            or found.metadata != pair.metadata
            or (judged and not found.has_preference_suggestion)
        ):
            plan.to_update.append(pair)
        else:
            plan.unchanged += 1
    return plan


# ---------------------------------------------------------------- talking to Argilla


def get_or_create_dataset(client, name: str, workspace: str, min_submitted: int, aspects: Sequence[str]):
    import argilla as rg

    if lookup(client.workspaces, workspace) is None:
        rg.Workspace(name=workspace, client=client).create()
    dataset = lookup(client.datasets, name=name, workspace=workspace)
    if dataset is None:
        settings = schema.preference_settings(min_submitted=min_submitted, aspects=aspects)
        return rg.Dataset(name=name, workspace=workspace, settings=settings, client=client).create(), True
    fields = [f.name for f in dataset.settings.fields]
    questions = [q.name for q in dataset.settings.questions]
    missing = schema.missing_names(fields, questions)
    if missing:
        raise AnnotationError(
            f"dataset {workspace}/{name} exists but is not a pairwise preference dataset made by push "
            f"(it lacks {', '.join(missing)}); choose another --dataset"
        )
    return dataset, False


def existing_records(client, dataset) -> dict:
    """Every record already in the dataset, by its external id, with whether it is annotated."""
    question_ids = {q.id: q.name for q in dataset.settings.questions}
    found = {}
    for page in argilla_adapter.record_pages(client, dataset):
        for model in page:
            found[str(model.external_id)] = ExistingRecord(
                annotated=bool(model.responses),
                fields=_plain_fields(model.fields or {}),
                metadata=_plain_metadata(model.metadata),
                has_preference_suggestion=any(
                    question_ids.get(s.question_id) == schema.PREFERENCE for s in model.suggestions or ()
                ),
            )
    return found


def _plain_fields(fields: dict) -> dict:
    plain = {}
    for name, value in fields.items():
        if isinstance(value, list):
            value = [m if isinstance(m, dict) else m.model_dump() for m in value]
        plain[name] = value
    return plain


def _plain_metadata(metadata) -> dict:
    if isinstance(metadata, dict):
        return metadata
    return {item.name: item.value for item in metadata or []}


def _record(pair: PairRecord, suggestion: Optional[Suggestion]):
    import argilla as rg

    suggestions = []
    if suggestion is not None:
        suggestions.append(
            rg.Suggestion(
                question_name=schema.PREFERENCE, value=suggestion.value, score=suggestion.score, agent=suggestion.agent
            )
        )
    return rg.Record(id=pair.id, fields=record_fields(pair), metadata=dict(pair.metadata), suggestions=suggestions)


def push_pairs(
    client,
    pairs: Sequence[PairRecord],
    dataset_name: str,
    workspace: str,
    min_submitted: int = 1,
    aspects: Sequence[str] = schema.DEFAULT_ASPECTS,
    suggest: Optional[Callable[[Sequence[PairRecord]], dict]] = None,
    batch_size: int = RECORDS_PER_BATCH,
    max_retries: int = 4,
    progress: bool = True,
) -> PushReport:
    """Create the dataset if needed and send the pairs that are new or changed.

    `suggest`, when given, maps the pairs to send to {pair id: Suggestion} (an LLM judge)."""
    sent = []  # [records the server confirmed, records to send]
    try:
        return _push(client, pairs, dataset_name, workspace, min_submitted, aspects, suggest, batch_size, max_retries,
                     progress, sent)
    except KeyboardInterrupt as interrupt:
        where = f"{workspace}/{dataset_name}"
        in_flight = "" if isinstance(interrupt, _StoppedBetweenBatches) else " (a batch in flight may or may not have arrived)"
        if not sent:
            done = f"no record was sent to {where} yet"
        else:
            done = f"{sent[0]} of the {sent[1]} records to send were sent to {where}{in_flight}"
        raise PushInterrupted(
            f"push interrupted: {done}. Running the same push again is safe: it finds the records that arrived "
            "by their ids and sends only the rest"
        ) from None


def _push(client, pairs, dataset_name, workspace, min_submitted, aspects, suggest, batch_size, max_retries, progress, sent):
    from tqdm import tqdm

    dataset, created = get_or_create_dataset(client, dataset_name, workspace, min_submitted, aspects)
    notes = []
    kept_overlap = dataset.settings.distribution.min_submitted
    if not created and kept_overlap != min_submitted:
        notes.append(f"the dataset keeps its min_submitted={kept_overlap}; --min-submitted {min_submitted} applies to new datasets")
    plan = plan_push(pairs, existing_records(client, dataset), judged=suggest is not None)
    to_send = plan.to_create + plan.to_update
    suggestions = suggest(to_send) if suggest is not None and to_send else {}

    retries = 0
    batch_size = max(1, min(batch_size, RECORDS_PER_BATCH))
    sent[:] = [0, len(to_send)]
    with tqdm(total=len(to_send), desc=f"pushing to {dataset_name}", unit="pair", disable=not progress) as bar, \
            _ctrl_c_between_batches() as ctrl_c:
        for start in range(0, len(to_send), batch_size):
            if ctrl_c.is_set():
                raise _StoppedBetweenBatches
            batch = to_send[start : start + batch_size]
            records = [_record(pair, suggestions.get(pair.id)) for pair in batch]
            retries += _with_retries(lambda: argilla_adapter.upsert_records(client, dataset, records), max_retries, start)
            sent[0] = start + len(batch)
            bar.update(len(batch))

    first_is_a = sum(1 for pair in to_send if not pair.flipped)
    return PushReport(
        dataset=dataset_name,
        workspace=workspace,
        pairs=len(pairs),
        created=len(plan.to_create),
        updated=len(plan.to_update),
        unchanged=plan.unchanged,
        skipped_annotated=plan.skipped_annotated,
        suggestions=len(suggestions),
        judge_failures=len(to_send) - len(suggestions) if suggest is not None else 0,
        a_is_first_input_answer=first_is_a,
        retries=retries,
        notes=notes,
    )


class _StoppedBetweenBatches(KeyboardInterrupt):
    """Ctrl-C seen between two batches: every batch sent so far is confirmed."""


@contextmanager
def _ctrl_c_between_batches():
    """While records are sent, Ctrl-C stops the push after the batch in flight, not inside it: a
    KeyboardInterrupt raised at a random point can be lost (Python ignores one raised in a finalizer,
    and the push then ran to its end) or leave a request half built. A second Ctrl-C interrupts at once."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # signal handlers live on the main thread
        yield requested
        return

    def stop_after_this_batch(signum, frame):
        requested.set()
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, stop_after_this_batch)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


def _with_retries(send: Callable[[], object], max_retries: int, start: int) -> int:
    """Send one batch; retry transient failures (connection, 5xx) with backoff. Safe because an
    upsert by external id is idempotent. Returns the number of retries."""
    import httpx

    ArgillaAPIError = argilla_adapter.api_error_type()

    for attempt in range(max_retries + 1):
        try:
            send()
            return attempt
        except (httpx.TransportError, ArgillaAPIError) as error:
            transient = isinstance(error, httpx.TransportError) or getattr(error, "status_code", 0) >= 500
            if not transient:
                raise AnnotationError(f"Argilla refused the batch of records from #{start}: {error}") from error
            if attempt == max_retries:
                raise AnnotationError(
                    f"sending the batch of records from #{start} failed {max_retries + 1} times: {error}"
                ) from error
            time.sleep(min(30.0, 0.5 * 2**attempt))
    return max_retries
