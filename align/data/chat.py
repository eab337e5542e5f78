"""Chat data for SFT: TRL's conversational rows, `{"messages": [{"role", "content"}, ...]}`.

Rows are validated strictly (an error names the location and the field), rendered with the
model's chat template, and tokenised here rather than inside the trainer so that every
truncation and every row left without assistant tokens is counted in the `DataReport`.
"""

from datasets import Dataset

from .sources import DataError, DataReport, Source, load_mixture

ROLES = ("system", "user", "assistant")


def validate_messages(messages, where: str, field: str = "messages", alternate: bool = True) -> list[dict]:
    """Check one conversation: known roles, non-empty text and, with `alternate`, an optional leading
    system message then user and assistant strictly alternating. Returns the messages as plain dicts."""
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


def validate_chat_row(row: dict, where: str) -> list[dict]:
    if "messages" not in row:
        raise DataError(f"{where}: field 'messages' is missing (chat rows are {{\"messages\": [...]}})")
    messages = validate_messages(row["messages"], where)
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: field 'messages[{len(messages) - 1}].role' must be 'assistant' (nothing to learn)")
    return messages


def tokenize_conversation(messages: list[dict], tokenizer, max_length: int | None) -> tuple[dict, bool]:
    """Chat-template token ids with the assistant mask; cut to `max_length` (keeping the start)."""
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    input_ids, mask = list(encoded["input_ids"]), list(encoded["assistant_masks"])
    if not any(mask):
        raise ValueError(
            "the chat template marks no assistant tokens: it needs {% generation %} around assistant content"
        )
    truncated = max_length is not None and len(input_ids) > max_length
    if truncated:
        input_ids, mask = input_ids[:max_length], mask[:max_length]
    return {"input_ids": input_ids, "assistant_masks": mask}, truncated


def build_sft_dataset(
    sources: list[Source], tokenizer, max_length: int | None, report: DataReport, seed: int = 0
) -> Dataset:
    """Validate, mix, tokenise. Rows cut by `max_length` are counted; rows left with no assistant
    token after the cut are dropped and counted."""
    rows = load_mixture(sources, validate_chat_row, report, seed=seed)
    examples = []
    for _, messages in rows:
        example, truncated = tokenize_conversation(messages, tokenizer, max_length)
        if truncated:
            report.truncated[f"longer than max_length={max_length}"] += 1
        if not any(example["assistant_masks"]):
            report.dropped[f"no assistant token within max_length={max_length}"] += 1
            continue
        examples.append(example)
    report.kept = len(examples)
    if not examples:
        raise DataError(f"no trainable rows left: {report.as_dict()}")
    return Dataset.from_list(examples)
