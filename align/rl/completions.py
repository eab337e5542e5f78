"""Reading a TRL completion: its text, the final answer after the last `</think>`, the last `\\boxed{}`
and the last fenced Python block. Shared by the math and code rewards (`align.rl.rewards`, `rewards_code`)."""

from __future__ import annotations

import re

THINK_START, THINK_END = "<think>", "</think>"
_PYTHON_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\r?\n(.*?)```", re.DOTALL | re.IGNORECASE)


def completion_text(completion) -> str:
    """The text of a standard (str) or conversational ([{"role": "assistant", "content": ...}]) completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        parts = []
        for message in completion:
            content = message.get("content", "") if isinstance(message, dict) else message
            if isinstance(content, list):  # multimodal content parts: keep the text ones
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            parts.append(content if isinstance(content, str) else "")
        return "".join(parts)
    raise TypeError(f"a completion must be a string or a list of messages, not {type(completion).__name__}")


def final_answer(text: str) -> str | None:
    """The text after the last `</think>`; None when a `<think>` is never closed; all of it without tags."""
    end = text.rfind(THINK_END)
    if end >= 0:
        return text[end + len(THINK_END) :]
    return None if THINK_START in text else text


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`), braces balanced; None if there is none."""
    for start in sorted((m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)), reverse=True):
        depth = 1
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i]
    return None


def last_python_block(text: str) -> str | None:
    """The last fenced ```python (or ```py) block, or None."""
    blocks = _PYTHON_BLOCK.findall(text)
    return blocks[-1] if blocks else None
