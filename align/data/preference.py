"""Preference data for DPO in TRL's formats, validated, mixed, and measured against the length limits.

Accepted rows (TRL's four preference formats; extra provenance columns, such as those written by
`annotation pull`, are allowed and stay in the source, the training set keeps the three fields):

- conversational, explicit prompt: `{"prompt": [messages], "chosen": [assistant message], "rejected": [...]}`
- conversational, implicit prompt: `{"chosen": [whole conversation], "rejected": [whole conversation]}`
- standard, explicit prompt: `{"prompt": str, "chosen": str, "rejected": str}`
- standard, implicit prompt: `{"chosen": str, "rejected": str}` (the common prefix is the prompt)
- Anthropic-HH transcripts: `{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}`, parsed into
  conversational turns at the turn markers (`align.data.transcripts`); a pair that cannot be cut into
  turns is dropped, counted and named in the data card (the real HH files hold a few such rows).

HH transcripts and TRL's standard implicit-prompt rows have the same fields (two texts, no prompt), so
which one a file holds is decided per file, once it is read: a file with at least one transcript is an
HH file, and its text pairs without turn markers are dropped, counted and named; a file whose texts
name the HH speakers but never in HH's layout (markers stripped or damaged) stops the run in one line;
a file with no speaker names at all is TRL's implicit-prompt format, and its data card says so.

Every row comes out with an explicit prompt, and all rows of a dataset (and of a mixture) in one
format; a row whose format differs from the first row's is named. Rows that the trainer would cut or silently drop
because of `max_length` / `max_prompt_length` are counted here, and dropped rows are removed here,
so nothing disappears without a number in the data card.
"""

from datasets import Dataset

from .chat import validate_messages
from .sources import (NAMED_DROPS, DataError, DataReport, SkipRow, Source, cache_file, fingerprint, load_mixture,
                      read_mixture, validated_rows)
from .transcripts import (TRANSCRIPT_LAYOUT, TranscriptError, looks_like_transcript, mentions_speakers,
                          split_transcript_pair)

UNPARSEABLE_TRANSCRIPT = "HH transcript that cannot be cut into turns"
UNMARKED_IN_HH_FILE = "text pair without Human/Assistant turn markers in a file of HH transcripts"


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
    if isinstance(chosen, str) and row.get("prompt") is None and (
        looks_like_transcript(chosen) or looks_like_transcript(rejected)
    ):
        try:
            return split_transcript_pair(chosen, rejected)
        except TranscriptError as err:
            raise SkipRow(UNPARSEABLE_TRANSCRIPT, f"{where} ({err})") from None
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


def _measure_batch(batch: dict, tokenizer, measure_answers: bool) -> dict:
    prompt_tokens, longest = [], []
    for prompt, chosen, rejected in zip(batch["prompt"], batch["chosen"], batch["rejected"]):
        prompt_tokens.append(_token_count(tokenizer, prompt))
        longest.append(max(_token_count(tokenizer, prompt, chosen), _token_count(tokenizer, prompt, rejected))
                       if measure_answers else 0)
    return {"prompt_tokens": prompt_tokens, "longest": longest}


def _text_pair_kind(row: dict) -> str | None:
    """For two texts without a prompt: "transcript" when either starts with HH's turn marker, else
    "unmarked" (an HH row without markers, or TRL's implicit prompt: only the whole file tells); None otherwise."""
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if row.get("prompt") is not None or not (isinstance(chosen, str) and isinstance(rejected, str)):
        return None
    return "transcript" if looks_like_transcript(chosen) or looks_like_transcript(rejected) else "unmarked"


class _PairsOfOneFile:
    """`validate` and `settle` for `load_mixture`: unmarked text pairs wait until their whole file is read,
    then are dropped (an HH file), refused (damaged HH markers) or read as TRL's implicit prompt."""

    def __init__(self, report: DataReport, validate_pair=validate_preference_row):
        self.report, self.validate_pair = report, validate_pair
        self._reset()

    def _reset(self) -> None:
        self.first_transcript = self.first_other = None  # locations, unparseable transcripts included
        self.unmarked = set()

    def validate(self, row: dict, where: str) -> dict:
        kind = _text_pair_kind(row)
        if kind == "unmarked":
            self.unmarked.add(where)
            return {"chosen": row["chosen"], "rejected": row["rejected"]}
        if kind == "transcript":
            self.first_transcript = self.first_transcript or where
        else:
            self.first_other = self.first_other or where
        return self.validate_pair(row, where)

    def settle(self, source: Source, rows: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
        first_transcript, first_other, unmarked = self.first_transcript, self.first_other, self.unmarked
        self._reset()
        if first_transcript is not None:
            if first_other is not None:
                raise DataError(f"{first_other}: not an HH transcript pair (two texts, no 'prompt') but "
                                f"{first_transcript} is one: every row of a dataset and of a mixture must use one format")
            dropped = [where for where, _ in rows if where in unmarked]
            if dropped:
                self.report.drop(UNMARKED_IN_HH_FILE, *dropped)
            return [(where, row) for where, row in rows if where not in unmarked]
        if not unmarked:
            return rows
        damaged = next((where for where, row in rows if where in unmarked
                        and (mentions_speakers(row["chosen"]) or mentions_speakers(row["rejected"]))), None)
        if damaged is not None:
            raise DataError(f"{source.path}: does not look like HH transcripts: its texts name the speakers "
                            f"({damaged}) but no row starts with a turn marker; expected {TRANSCRIPT_LAYOUT}")
        self.report.notes.append(f"{source.path}: no Human/Assistant turn markers, read as TRL's implicit-prompt "
                                 "format (the prompt is the text chosen and rejected share)")
        kept, _ = validated_rows(rows, lambda row, where: self.validate_pair(row, where) if where in unmarked else row,
                                 self.report)
        return kept


def read_preference_rows(sources: list[Source], report: DataReport, seed: int = 0) -> Dataset:
    """Validated, mixed pairs with an explicit prompt: columns `prompt`, `chosen`, `rejected`, `source`, `location`."""
    pairs = _PairsOfOneFile(report)
    return read_mixture(sources, pairs.validate, report, seed=seed, settle=pairs.settle)


def load_preference_pairs(sources: list[Source], report: DataReport, validate_pair=validate_preference_row,
                          ) -> list[tuple[str, str, dict]]:
    """`(source path, location, pair)` per row, read as `read_preference_rows` reads them (HH decided per file),
    for readers outside training. `validate_pair(row, where)` replaces `validate_preference_row` for a reader
    with rules of its own; it may raise `SkipRow` (counted in `report`) or `DataError`."""
    pairs = _PairsOfOneFile(report, validate_pair)
    return load_mixture(sources, pairs.validate, report, settle=pairs.settle)


def measure_preference_rows(
    rows: Dataset, tokenizer, max_length: int | None, max_prompt_length: int | None, report: DataReport,
    num_proc: int | None = None,
) -> Dataset:
    """Count what the length limits do, in token counts of the chat-templated text. Pairs whose prompt
    alone reaches a limit are dropped (counted and named); pairs whose prompt + answer exceed `max_length`
    are counted as truncated (the trainer's collator cuts them). Returns `prompt`, `chosen`, `rejected`."""
    if max_length is not None or max_prompt_length is not None:
        lengths = rows.map(
            _measure_batch, batched=True, batch_size=256, num_proc=num_proc if num_proc and num_proc > 1 else None,
            fn_kwargs={"tokenizer": tokenizer, "measure_answers": max_length is not None},
            remove_columns=rows.column_names, desc="measuring pairs",
            new_fingerprint=(key := fingerprint(rows, tokenizer, tokenizer.chat_template, max_length is not None)),
            cache_file_name=cache_file("dpo-lengths", key),
        )
        drop_reason = {}
        for i, (prompt_tokens, longest) in enumerate(zip(lengths["prompt_tokens"], lengths["longest"])):
            if max_prompt_length is not None and prompt_tokens > max_prompt_length:
                drop_reason[i] = f"prompt longer than max_prompt_length={max_prompt_length}"
            elif max_length is not None and prompt_tokens >= max_length:
                drop_reason[i] = f"prompt fills max_length={max_length}"
            elif max_length is not None and longest > max_length:
                report.truncated[f"prompt + answer longer than max_length={max_length}"] += 1
        for reason in dict.fromkeys(drop_reason.values()):
            indices = [i for i, r in drop_reason.items() if r == reason]
            report.drop(reason, *rows.select(indices[:NAMED_DROPS])["location"], count=len(indices))
        if drop_reason:
            rows = rows.select([i for i in range(len(rows)) if i not in drop_reason])
    report.kept = len(rows)
    if not len(rows):
        raise DataError(f"no trainable pairs left: {report.as_dict()}")
    return rows.select_columns(["prompt", "chosen", "rejected"])


def build_preference_dataset(
    sources: list[Source], tokenizer, max_length: int | None, max_prompt_length: int | None,
    report: DataReport, seed: int = 0, num_proc: int | None = None,
) -> Dataset:
    """Validate, mix, and count what the length limits do (`read_preference_rows` then `measure_preference_rows`)."""
    rows = read_preference_rows(sources, report, seed=seed)
    return measure_preference_rows(rows, tokenizer, max_length, max_prompt_length, report, num_proc)
