"""Preference data for DPO in TRL's formats, validated, mixed, and measured against the length limits.

Accepted rows (TRL's four preference formats; extra provenance columns, such as those written by
`annotation pull`, are allowed and stay in the source, the training set keeps the three fields):

- conversational, explicit prompt: `{"prompt": [messages], "chosen": [assistant message], "rejected": [...]}`
- conversational, implicit prompt: `{"chosen": [whole conversation], "rejected": [whole conversation]}`
- standard, explicit prompt: `{"prompt": str, "chosen": str, "rejected": str}`
- standard, implicit prompt: `{"chosen": str, "rejected": str}` (the common prefix is the prompt)

Every row comes out with an explicit prompt. Rows that the trainer would cut or silently drop
because of `max_length` / `max_prompt_length` are counted here, and dropped rows are removed here,
so nothing disappears without a number in the data card.
"""

from datasets import Dataset

from .chat import validate_messages
from .sources import DataError, DataReport, Source, load_mixture


def _common_prefix(a: list, b: list) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _validate_answer(value, where: str, field: str) -> list[dict]:
    messages = validate_messages(value, where, field, alternate=False)
    if any(m["role"] != "assistant" for m in messages):
        bad = next(i for i, m in enumerate(messages) if m["role"] != "assistant")
        raise DataError(f"{where}: field '{field}[{bad}].role' must be 'assistant' (answers hold assistant turns only)")
    return messages


def validate_preference_row(row: dict, where: str) -> dict:
    """Normalise one row to an explicit prompt, or raise `DataError` naming the location and field."""
    for field in ("chosen", "rejected"):
        if field not in row or row[field] is None:
            raise DataError(f"{where}: field '{field}' is missing")
    chosen, rejected = row["chosen"], row["rejected"]

    if isinstance(chosen, str) != isinstance(rejected, str):
        raise DataError(f"{where}: fields 'chosen' and 'rejected' must both be text or both be message lists")
    if isinstance(chosen, str):
        prompt = row.get("prompt")
        if prompt is None:  # implicit: the common prefix
            cut = _common_prefix(chosen, rejected)
            prompt, chosen, rejected = chosen[:cut], chosen[cut:], rejected[cut:]
        elif not isinstance(prompt, str):
            raise DataError(f"{where}: field 'prompt' must be text when the answers are text")
        if not prompt.strip():
            raise DataError(f"{where}: field 'prompt' is empty")
        for field, text in (("chosen", chosen), ("rejected", rejected)):
            if not text.strip():
                raise DataError(f"{where}: field '{field}' is empty")
    else:
        if "prompt" in row and row["prompt"] is not None:
            prompt = validate_messages(row["prompt"], where, "prompt")
            chosen = _validate_answer(chosen, where, "chosen")
            rejected = _validate_answer(rejected, where, "rejected")
        else:  # implicit: both conversations must share everything up to the last assistant turn
            full_chosen = validate_messages(chosen, where, "chosen")
            full_rejected = validate_messages(rejected, where, "rejected")
            if full_chosen[:-1] != full_rejected[:-1]:
                cut = _common_prefix(full_chosen, full_rejected)
                raise DataError(
                    f"{where}: fields 'chosen[{cut}]' and 'rejected[{cut}]' differ before the final answer: "
                    "chosen and rejected must continue the same prompt"
                )
            prompt, chosen, rejected = full_chosen[:-1], full_chosen[-1:], full_rejected[-1:]
            if chosen[0]["role"] != "assistant":
                raise DataError(f"{where}: field 'chosen[{len(prompt)}].role' must be 'assistant'")
        if prompt[-1]["role"] != "user":
            raise DataError(f"{where}: field 'prompt[{len(prompt) - 1}].role' must be 'user' (the answer replies to it)")
        prompt = [dict(m) for m in prompt]
    if chosen == rejected:
        raise DataError(f"{where}: fields 'chosen' and 'rejected' are identical (nothing to prefer)")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _token_count(tokenizer, prompt, completion=None) -> int:
    if isinstance(prompt, str):
        return len(tokenizer(prompt + (completion or ""), add_special_tokens=False)["input_ids"])
    messages = prompt + (completion or [])
    return len(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=completion is None,
                                             return_dict=True)["input_ids"])


def build_preference_dataset(
    sources: list[Source], tokenizer, max_length: int | None, max_prompt_length: int | None,
    report: DataReport, seed: int = 0,
) -> Dataset:
    """Validate, mix, and count what the length limits do. Rows whose prompt alone reaches a limit
    are dropped (and counted); rows whose prompt + answer exceed `max_length` are counted as
    truncated (the trainer's collator cuts them)."""
    rows = load_mixture(sources, validate_preference_row, report, seed=seed)
    kept = []
    for _, row in rows:
        prompt_tokens = _token_count(tokenizer, row["prompt"])
        if max_prompt_length is not None and prompt_tokens > max_prompt_length:
            report.dropped[f"prompt longer than max_prompt_length={max_prompt_length}"] += 1
            continue
        if max_length is not None and prompt_tokens >= max_length:
            report.dropped[f"prompt fills max_length={max_length}"] += 1
            continue
        if max_length is not None:
            longest = max(_token_count(tokenizer, row["prompt"], row[k]) for k in ("chosen", "rejected"))
            if longest > max_length:
                report.truncated[f"prompt + answer longer than max_length={max_length}"] += 1
        kept.append(row)
    report.kept = len(kept)
    if not kept:
        raise DataError(f"no trainable pairs left: {report.as_dict()}")
    return Dataset.from_list(kept)

