"""A reward function given to the rounds by dotted path (tests.iterate.rewards.says_paris), with TRL's signature."""

from tests.conftest import SOMETIMES_ANSWER


def says_paris(prompts, completions, **columns) -> list[float]:
    """1 for a completion that gives SOMETIMES_ANSWER's fact, else 0."""
    texts = [c if isinstance(c, str) else "".join(m["content"] for m in c) for c in completions]
    return [1.0 if "Paris" in text else 0.0 for text in texts]
