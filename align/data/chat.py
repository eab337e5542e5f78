"""Chat data for SFT: TRL's conversational rows, `{"messages": [{"role", "content"}, ...]}`.

Rows are validated strictly (an error names the location and the field) into a `datasets.Dataset`
of conversations (`read_chat_rows`), then rendered with the model's chat template and tokenised
with assistant-only masks (`tokenize_chat_rows`, see `align.data.templates` for what is masked;
cached in datasets' cache directory, so a re-run on the same rows and tokenizer skips it),
here rather than inside the trainer so that every truncation and every row left without assistant
tokens is counted in the `DataReport`. Tokenisation runs with `datasets.map` over `num_proc` processes.
"""

from datasets import Dataset

from .sources import NAMED_DROPS, DataError, DataReport, Source, cache_file, fingerprint, read_mixture
from .templates import AssistantMasker, TemplateError

ROLES = ("system", "user", "assistant")


def validate_messages(messages, where: str, field: str = "messages", alternate: bool = True) -> list[dict]:
    """Check one conversation: known roles, non-empty text and, with `alternate`, an optional leading
    system message then user and assistant strictly alternating. Returns the messages as plain dicts."""
    if isinstance(messages, str):
        hint = " (a CSV cell is always text: store conversations as JSONL or Parquet)" if ".csv:" in where else ""
        raise DataError(f"{where}: field '{field}' is text where a list of messages was expected{hint}")
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: field '{field}' must be a non-empty list of messages")
    cleaned = []
    for i, message in enumerate(messages):
        name = f"{field}[{i}]"
        if not isinstance(message, dict):
            raise DataError(f"{where}: field '{name}' must be an object with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role is None:
            raise DataError(f"{where}: field '{name}.role' is missing")
        if role not in ROLES:
            raise DataError(f"{where}: field '{name}.role' is {role!r}, expected one of {', '.join(ROLES)}")
        if content is None:
            raise DataError(f"{where}: field '{name}.content' is missing")
        if not isinstance(content, str) or not content.strip():
            raise DataError(f"{where}: field '{name}.content' is empty")
        cleaned.append({"role": role, "content": content})
    if not alternate:
        return cleaned
    turns = cleaned[1:] if cleaned[0]["role"] == "system" else cleaned
    for i, message in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if message["role"] != expected:
            index = i + (len(cleaned) - len(turns))
            raise DataError(
                f"{where}: field '{field}[{index}].role' is {message['role']!r} where {expected!r} was expected "
                "(after an optional system message, user and assistant turns must alternate)"
            )
    return cleaned


def validate_chat_row(row: dict, where: str) -> dict:
    """`{"messages": [...]}` cleaned, or `DataError` naming the location and the field."""
    if "messages" not in row:
        raise DataError(f"{where}: field 'messages' is missing (chat rows are {{\"messages\": [...]}})")
    messages = validate_messages(row["messages"], where)
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: field 'messages[{len(messages) - 1}].role' must be 'assistant' (nothing to learn)")
    return {"messages": messages}


def read_chat_rows(sources: list[Source], report: DataReport, seed: int = 0) -> Dataset:
    """Validated, mixed conversations: columns `messages`, `source`, `location`."""
    return read_mixture(sources, validate_chat_row, report, seed=seed)


def _tokenize_batch(batch: dict, masker: AssistantMasker, max_length: int | None) -> dict:
    try:
        encoded = masker.encode(batch["messages"])
    except TemplateError:  # name the row: encode again one by one
        for messages, where in zip(batch["messages"], batch["location"]):
            try:
                masker.encode([messages])
            except TemplateError as err:
                raise DataError(f"{where}: field 'messages': {err}") from None
        raise
    out = {"input_ids": [], "assistant_masks": [], "truncated": [], "location": batch["location"]}
    for example in encoded:
        ids, mask = example["input_ids"], example["assistant_masks"]
        truncated = max_length is not None and len(ids) > max_length
        if truncated:
            ids, mask = ids[:max_length], mask[:max_length]
        out["input_ids"].append(ids)
        out["assistant_masks"].append(mask)
        out["truncated"].append(truncated)
    return out


def tokenize_chat_rows(
    rows: Dataset, tokenizer, max_length: int | None, report: DataReport, num_proc: int | None = None
) -> Dataset:
    """Token ids and assistant masks (columns `input_ids`, `assistant_masks`). Rows cut by `max_length`
    are counted; rows left with no assistant token after the cut are dropped, counted and named."""
    masker = AssistantMasker(tokenizer)
    report.details["assistant_masks"] = masker.template.origin
    key = fingerprint(rows, tokenizer, masker.template.template, max_length)
    tokenized = rows.map(
        _tokenize_batch, batched=True, batch_size=256, num_proc=num_proc if num_proc and num_proc > 1 else None,
        fn_kwargs={"masker": masker, "max_length": max_length}, remove_columns=rows.column_names,
        desc="tokenising chat rows",
        new_fingerprint=key, cache_file_name=cache_file("sft", key),
    )
    truncated = sum(tokenized["truncated"])
    if truncated:
        report.truncated[f"longer than max_length={max_length}"] += truncated
    empty = [i for i, mask in enumerate(tokenized["assistant_masks"]) if not any(mask)]
    if empty:
        named = tokenized.select(empty[:NAMED_DROPS])["location"]
        report.drop(f"no assistant token within max_length={max_length}", *named, count=len(empty))
        dropped = set(empty)
        tokenized = tokenized.select([i for i in range(len(tokenized)) if i not in dropped])
    report.kept = len(tokenized)
    if not len(tokenized):
        raise DataError(f"no trainable rows left: {report.as_dict()}")
    return tokenized.remove_columns(["truncated", "location"])


def build_sft_dataset(
    sources: list[Source], tokenizer, max_length: int | None, report: DataReport, seed: int = 0,
    num_proc: int | None = None,
) -> Dataset:
    """Validate, mix, tokenise (`read_chat_rows` then `tokenize_chat_rows`)."""
    return tokenize_chat_rows(read_chat_rows(sources, report, seed=seed), tokenizer, max_length, report, num_proc)
