"""The learning test's task: the SFT data teaches two answers, the reward (named by dotted path, never seen in
training) pays one of them."""

import random

NOUNS = ["apple", "river", "stone", "cloud", "garden", "window", "lamp", "horse", "forest", "bridge", "candle",
         "mirror", "tower", "island", "valley", "ocean", "desert", "meadow", "castle", "harbor", "village",
         "mountain", "basket", "ladder", "pillow", "violin", "rocket", "anchor", "saddle", "lantern"]
HELD_OUT = ["table", "shell", "coat", "wheel", "flag", "drum", "bottle", "glove", "boat", "tent"]
RARE, COMMON = "red", "blue"


def prompt(noun: str) -> list[dict]:
    return [{"role": "user", "content": f"Pick a colour for the {noun}."}]


def sft_rows(n: int, rare_share: float, seed: int = 0) -> list[dict]:
    """Chat rows: the answer is RARE in `rare_share` of them, else COMMON."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        answer = RARE if i < round(n * rare_share) else COMMON
        rows.append({"messages": [*prompt(rng.choice(NOUNS)), {"role": "assistant", "content": f"{answer}."}]})
    rng.shuffle(rows)
    return rows


def prompt_rows() -> list[dict]:
    return [{"prompt": prompt(noun)} for noun in NOUNS]


def pays_rare(completions, **kwargs) -> list[float]:
    """1.0 for a completion that gives the rare answer, else 0.0 (the reward GPPO learns from)."""
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [float(t.strip().lower().startswith(RARE)) for t in texts]


def even_length(completions, **kwargs) -> list[float]:
    """1.0 for a completion whose text has an even number of characters: an untrained model's completions are
    random text, so its groups differ in this reward and a short run has rollouts to train on."""
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [float(len(t) % 2 == 0) for t in texts]
