"""Anthropic-HH-style transcripts, `"\\n\\nHuman: ...\\n\\nAssistant: ..."`, parsed into conversational turns.

The raw HH-RLHF rows hold two whole transcripts that share everything up to the last answer. Splitting
them at the longest common *character* prefix cuts inside an answer whenever the two answers start
alike (19% of the harmless-base test pairs), so they are parsed at the turn markers instead:
prompt = every turn before the last assistant turn, chosen/rejected = that last assistant turn.
"""

import re

# A turn starts at a blank line followed by the speaker's name. Text before the first marker, or a
# transcript that does not start with one, is not a transcript.
_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")
_ROLES = {"Human": "user", "Assistant": "assistant"}
# The speakers' names at a line start in any other layout (stripped, one newline, indented): text that has
# these but no turn marker is a transcript whose markers were damaged, not plain text.
_SPEAKER = re.compile(r"(?:^|\n)[ \t]*(?:Human|Assistant):")
# What the reader expects, for messages that must say it.
TRANSCRIPT_LAYOUT = "'\\n\\nHuman: ...\\n\\nAssistant: ...', a blank line before each speaker, Human first"


class TranscriptError(ValueError):
    """A transcript that cannot be cut into alternating turns; the message says what is wrong."""


def looks_like_transcript(text) -> bool:
    return isinstance(text, str) and _TURN.match(text) is not None


def mentions_speakers(text) -> bool:
    return isinstance(text, str) and _SPEAKER.search(text) is not None


def parse_transcript(text: str) -> list[dict]:
    """`"\\n\\nHuman: a\\n\\nAssistant: b"` -> `[{"role": "user", "content": "a"}, {"role": "assistant", ...}]`.

    Turns must alternate, starting with Human; content is kept as written except for the blank line
    and marker around it. An empty final answer is kept empty (the caller decides)."""
    markers = list(_TURN.finditer(text))
    if not markers or markers[0].start() != 0:
        raise TranscriptError("does not start with '\\n\\nHuman: '")
    turns = []
    for k, marker in enumerate(markers):
        end = markers[k + 1].start() if k + 1 < len(markers) else len(text)
        role = _ROLES[marker.group(1)]
        expected = "user" if k % 2 == 0 else "assistant"
        if role != expected:
            raise TranscriptError(f"turn {k + 1} is {marker.group(1)} where {'Human' if expected == 'user' else 'Assistant'} "
                                  "was expected (turns must alternate, Human first)")
        turns.append({"role": role, "content": text[marker.end():end].strip()})
    return turns


def split_transcript_pair(chosen: str, rejected: str) -> dict:
    """A conversational explicit-prompt pair from two transcripts, or `TranscriptError` saying why not."""
    parsed = {}
    for field, text in (("chosen", chosen), ("rejected", rejected)):
        try:
            turns = parse_transcript(text)
        except TranscriptError as err:
            raise TranscriptError(f"field '{field}' {err}") from None
        if turns[-1]["role"] != "assistant":
            raise TranscriptError(f"field '{field}' ends with a Human turn (no answer to prefer)")
        if not turns[-1]["content"]:
            raise TranscriptError(f"field '{field}' has an empty final Assistant turn")
        empty = next((i for i, t in enumerate(turns[:-1]) if not t["content"]), None)
        if empty is not None:
            raise TranscriptError(f"field '{field}' turn {empty + 1} is empty")
        parsed[field] = turns
    if parsed["chosen"][:-1] != parsed["rejected"][:-1]:
        raise TranscriptError("fields 'chosen' and 'rejected' differ before their last Assistant turn")
    return {"prompt": parsed["chosen"][:-1], "chosen": parsed["chosen"][-1:], "rejected": parsed["rejected"][-1:]}
