"""The demo's reward (`configs/rl/tiny.yaml` names it by dotted path, as a user names their own)."""


def completion_text(completion) -> str:
    """A TRL completion as text: standard (a string) or conversational (a list with one assistant message)."""
    return completion if isinstance(completion, str) else "".join(m["content"] for m in completion)


def mentions_answer(completions, answer, **kwargs) -> list[float]:
    """1.0 when the completion names the row's `answer` (case-insensitive), else 0.0."""
    return [float(str(ref).lower() in completion_text(c).lower()) for c, ref in zip(completions, answer, strict=True)]
