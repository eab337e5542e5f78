"""`push`'s input, checked, and the A/B pairs made from it (pure functions).

Each input row is `{"id"?: str, "prompt": str | [messages], "completions": [{"model": str,
"content": str}, ...], "metadata"?: {...}, "gold"?: str}`. A row with k distinct answers gives
k·(k-1)/2 pairs. A row with `gold` (the model name of the better answer, for quality control:
`quality.py`) holds exactly two answers, one of them by that model; its pair carries the gold
model in the hidden metadata. Metadata values must be plain JSON (no NaN or infinity), checked
here, before anything is sent.
Every pair gets an id derived from its content only (the prompt's id and both answers), so
pushing the same input again finds the same records; and a coin flip seeded by that id decides
which answer is shown as A, so the order is random across records (position bias cannot line
up with a model) yet the same on every push. The records carry the mapping (which model wrote
A and B), so `pull` maps the annotators' A/B back to the real answers.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Iterable, Iterator, Optional

from annotation.errors import AnnotationError

ROLES = ("system", "user", "assistant")
RESERVED_METADATA = ("prompt_id", "models", "model_a", "model_b", "gold")  # written by make_pairs
TEXT_METADATA = ("source", "category")  # filters in the UI: text values
MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True)
class Completion:
    model: str
    content: str


@dataclass(frozen=True)
class PromptRow:
    location: str  # "file:line" or "dir:row N", for messages
    prompt_id: str
    prompt: tuple  # messages, each {"role", "content"}; the last one is the user's
    completions: tuple  # Completion, distinct contents
    metadata: dict = field(default_factory=dict)
    gold: Optional[str] = None  # the model name of the better answer (a quality-control pair)


@dataclass(frozen=True)
class PairRecord:
    id: str
    prompt_id: str
    prompt: tuple
    answer_a: Completion
    answer_b: Completion
    metadata: dict
    location: str
    flipped: bool  # A is the later of the two answers in the input


@dataclass
class ParseReport:
    rows: list
    identical_answers_dropped: int = 0  # same content twice in one row: only one kept


# ---------------------------------------------------------------- reading


def read_input_rows(path: Path) -> Iterator[tuple]:
    """(location, raw row or an error message) from a JSONL file or a `save_to_disk` directory."""
    path = Path(path)
    if path.is_dir():
        import datasets

        for index, row in enumerate(datasets.load_from_disk(str(path))):
            yield f"{path}:row {index}", row
        return
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{number}", json.loads(line)
            except json.JSONDecodeError as error:
                yield f"{path}:{number}", f"not valid JSON ({error.msg} at column {error.colno})"


def parse_rows(raw_rows: Iterable[tuple]) -> ParseReport:
    """Check every row and collect all problems before failing, each naming its row and field."""
    errors, rows = [], []
    seen_ids, seen_prompts = {}, {}
    report = ParseReport(rows=rows)
    for location, raw in raw_rows:
        try:
            row, dropped = _parse_row(location, raw)
        except ValueError as error:
            errors.append(f"{location}: {error}")
            continue
        report.identical_answers_dropped += dropped
        prompt_key = _canonical(row.prompt)
        if prompt_key in seen_prompts:
            errors.append(
                f"{location}: field 'prompt': duplicate prompt (same as {seen_prompts[prompt_key]}); "
                "put all answers to one prompt in one row's 'completions'"
            )
            continue
        if row.prompt_id in seen_ids:
            errors.append(f"{location}: field 'id': {row.prompt_id!r} is also the id of {seen_ids[row.prompt_id]}")
            continue
        seen_ids[row.prompt_id] = location
        seen_prompts[prompt_key] = location
        rows.append(row)
    if errors:
        shown = errors[:MAX_REPORTED_ERRORS]
        more = len(errors) - len(shown)
        raise AnnotationError(
            f"{len(errors)} bad input row(s):\n  " + "\n  ".join(shown) + (f"\n  ... and {more} more" if more else "")
        )
    if not rows:
        raise AnnotationError("the input holds no rows")
    return report


def _parse_row(location: str, raw) -> tuple:
    if isinstance(raw, str):
        raise ValueError(raw)
    if not isinstance(raw, dict):
        raise ValueError(f"a row must be a JSON object, not {type(raw).__name__}")
    prompt = parse_prompt(raw.get("prompt"))
    completions, dropped = _parse_completions(raw.get("completions"))
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError("field 'metadata' must be an object")
    for key in RESERVED_METADATA:
        if key in metadata:
            raise ValueError(f"field 'metadata.{key}' is reserved (push writes it); rename it")
    for key in TEXT_METADATA:
        if key in metadata and not isinstance(metadata[key], str):
            raise ValueError(f"field 'metadata.{key}' must be a string")
    for key, value in metadata.items():
        _check_plain_json(value, f"metadata.{key}")
    gold = _parse_gold(raw.get("gold"), completions)
    prompt_id = raw.get("id")
    if prompt_id is None:
        prompt_id = "p-" + _digest(_canonical(prompt))[:16]
    elif not isinstance(prompt_id, (str, int)) or str(prompt_id).strip() == "":
        raise ValueError("field 'id' must be a non-empty string")
    return PromptRow(location, str(prompt_id), prompt, completions, metadata, gold), dropped


def _check_plain_json(value, where: str) -> None:
    """Argilla stores metadata as JSON, which has no NaN or infinity (pandas writes NaN for gaps)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"field '{where}' is {value}, which JSON cannot hold; leave the key out or use null")
    if isinstance(value, dict):
        for key, inner in value.items():
            _check_plain_json(inner, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, inner in enumerate(value):
            _check_plain_json(inner, f"{where}[{index}]")
    elif not isinstance(value, (str, int, float, bool, type(None))):
        raise ValueError(f"field '{where}' is a {type(value).__name__}, not a JSON value")


def _parse_gold(gold, completions: tuple) -> Optional[str]:
    if gold is None:
        return None
    if not isinstance(gold, str) or not gold.strip():
        raise ValueError("field 'gold' must name the model of the better answer")
    models = [completion.model for completion in completions]
    if len(completions) != 2:
        raise ValueError(f"field 'gold': a gold row holds exactly two different answers, not {len(completions)}")
    if models.count(gold) != 1:
        raise ValueError(f"field 'gold': {gold!r} must be the model of exactly one of the two answers ({', '.join(models)})")
    return gold


def parse_prompt(prompt) -> tuple:
    if prompt is None:
        raise ValueError("field 'prompt' is missing")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("field 'prompt' is empty")
        return ({"role": "user", "content": prompt},)
    if not isinstance(prompt, list) or not prompt:
        raise ValueError("field 'prompt' must be a string or a non-empty list of messages")
    messages = []
    for index, message in enumerate(prompt):
        where = f"field 'prompt[{index}]'"
        if not isinstance(message, dict):
            raise ValueError(f"{where} must be an object with 'role' and 'content'")
        if message.get("role") not in ROLES:
            raise ValueError(f"{where}.role must be one of {', '.join(ROLES)}, not {message.get('role')!r}")
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            raise ValueError(f"{where}.content is missing or empty")
        messages.append({"role": message["role"], "content": message["content"]})
    if messages[-1]["role"] != "user":
        raise ValueError("field 'prompt': the last message must be the user's (the answers reply to it)")
    return tuple(messages)


def _parse_completions(completions) -> tuple:
    if completions is None:
        raise ValueError("field 'completions' is missing (a pair needs two or more answers)")
    if not isinstance(completions, list):
        raise ValueError("field 'completions' must be a list of {'model', 'content'} objects")
    parsed, seen = [], set()
    for index, completion in enumerate(completions):
        where = f"field 'completions[{index}]'"
        if not isinstance(completion, dict):
            raise ValueError(f"{where} must be an object with 'model' and 'content'")
        if not isinstance(completion.get("content"), str) or not completion["content"].strip():
            raise ValueError(f"{where}.content is missing or empty")
        if not isinstance(completion.get("model"), str) or not completion["model"].strip():
            raise ValueError(f"{where}.model is missing or empty (name the model that wrote the answer)")
        key = completion["content"].strip()
        if key in seen:
            continue
        seen.add(key)
        parsed.append(Completion(completion["model"], completion["content"]))
    if len(parsed) < 2:
        count = len(completions)
        detail = "answer" if count == 1 else "distinct answers"
        raise ValueError(f"field 'completions' has {len(parsed)} {detail}; a pair needs two or more different answers")
    return tuple(parsed), len(completions) - len(parsed)


# ---------------------------------------------------------------- pairs


def make_pairs(rows: Iterable[PromptRow], seed: int = 0, max_pairs_per_prompt: Optional[int] = None) -> tuple:
    """All pairs of each row's answers (or the first `max_pairs_per_prompt`), A/B order drawn
    per pair; returns (pairs, number of pairs left out by the cap)."""
    pairs, capped = [], 0
    for row in rows:
        candidates = list(combinations(row.completions, 2))
        if max_pairs_per_prompt is not None and len(candidates) > max_pairs_per_prompt:
            capped += len(candidates) - max_pairs_per_prompt
            candidates = candidates[:max_pairs_per_prompt]
        for first, second in candidates:
            pairs.append(_pair(row, first, second, seed))
    return pairs, capped


def _pair(row: PromptRow, first: Completion, second: Completion, seed: int) -> PairRecord:
    # The id must not depend on the order of the answers in the input: sort them by content.
    one, two = sorted((first, second), key=lambda c: _digest(c.content))
    record_id = f"{row.prompt_id}:{_digest(one.content)[:10]}:{_digest(two.content)[:10]}"
    if random.Random(f"{seed}:{record_id}").random() < 0.5:
        one, two = two, one
    metadata = {key: value for key, value in row.metadata.items() if value is not None}
    if row.gold is not None:
        metadata["gold"] = row.gold
    metadata.update(
        prompt_id=row.prompt_id,
        models=sorted({one.model, two.model}),
        model_a=one.model,
        model_b=two.model,
    )
    return PairRecord(record_id, row.prompt_id, row.prompt, one, two, metadata, row.location, flipped=one is not first)


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
