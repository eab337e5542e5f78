"""Reward functions given to the rounds by dotted path (tests.iterate.rewards.says_paris), with TRL's signature."""

import os
from pathlib import Path

from tests.conftest import SOMETIMES_ANSWER


def says_paris(prompts, completions, **columns) -> list[float]:
    """1 for a completion that gives SOMETIMES_ANSWER's fact, else 0."""
    texts = [c if isinstance(c, str) else "".join(m["content"] for m in c) for c in completions]
    return [1.0 if "Paris" in text else 0.0 for text in texts]


def says_paris_counted(prompts, completions, **columns) -> list[float]:
    """says_paris, booking each call as a line in the file $ITERATE_REWARD_CALLS. While the file
    $ITERATE_INTERRUPT_SCORING exists it is removed and the call raises KeyboardInterrupt: a Ctrl-C
    while the round is being scored."""
    stop = Path(os.environ["ITERATE_INTERRUPT_SCORING"])
    if stop.is_file():
        stop.unlink()
        raise KeyboardInterrupt
    with Path(os.environ["ITERATE_REWARD_CALLS"]).open("a") as calls:
        calls.write(f"{len(completions)}\n")
    return says_paris(prompts, completions, **columns)
