"""Small learnable tasks for the demo and the tests, written as the stages' input files.

    python -m align.data.demo --out runs/data

- `sft.jsonl`: chat rows whose answers follow fixed rules (capitals, counting), so that even a
  tiny random model's loss falls within a few dozen steps;
- `sft_eval.jsonl`: more rows of the same rules;
- `dpo.jsonl`, `dpo_eval.jsonl`: preference pairs (conversational, explicit prompt) on the same
  questions, where the chosen answer follows the rule and the rejected one breaks it (a wrong
  capital, a skipped number), for training and for held-out evaluation;
- `rl.jsonl`: prompt-only rows (capital questions) with the reference `answer`, for the RL stage
  (its demo reward, `align.rl.demo.mentions_answer`, pays a completion that names the answer).
They are synthetic: a model trained on them has learnt the rules and nothing else.
"""

import argparse
import json
import random
from pathlib import Path

CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid", "Egypt": "Cairo",
    "Peru": "Lima", "Kenya": "Nairobi", "Chile": "Santiago", "Greece": "Athens", "Norway": "Oslo",
    "Poland": "Warsaw", "Cuba": "Havana", "Nepal": "Kathmandu", "Ireland": "Dublin", "Austria": "Vienna",
    "Canada": "Ottawa",
}
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def chat_examples(n: int, seed: int) -> list[dict]:
    """`n` chat rows, half capital questions and half counting, shuffled by `seed`."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        if i % 2 == 0:
            country = rng.choice(sorted(CAPITALS))
            user, answer = f"What is the capital of {country}?", f"The capital of {country} is {CAPITALS[country]}."
        else:
            start = rng.randrange(0, 7)
            stop = start + rng.randrange(2, 5)
            user = f"Count from {NUMBERS[start]} to {NUMBERS[min(stop, 10)]}."
            answer = " ".join(NUMBERS[start : min(stop, 10) + 1]) + "."
        rows.append({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]})
    return rows


def preference_examples(n: int, seed: int) -> list[dict]:
    """`n` pairs: the chosen answer is right, the rejected one breaks the rule in a plausible way."""
    rng = random.Random(seed)
    pairs = []
    for row in chat_examples(n, seed):
        user, answer = row["messages"][0]["content"], row["messages"][1]["content"]
        if user.startswith("What is the capital"):
            country = user.removeprefix("What is the capital of ").rstrip("?")
            wrong = rng.choice(sorted(set(CAPITALS.values()) - {CAPITALS[country]}))
            broken = answer.replace(CAPITALS[country], wrong)
        else:
            words = answer.rstrip(".").split()
            del words[rng.randrange(1, len(words))]  # skip a number
            broken = " ".join(words) + "."
        pairs.append({
            "prompt": [{"role": "user", "content": user}],
            "chosen": [{"role": "assistant", "content": answer}],
            "rejected": [{"role": "assistant", "content": broken}],
        })
    return pairs


def prompt_examples(n: int, seed: int) -> list[dict]:
    """`n` prompt-only capital questions with the capital as `answer`."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        country = rng.choice(sorted(CAPITALS))
        rows.append({"prompt": [{"role": "user", "content": f"What is the capital of {country}?"}],
                     "answer": CAPITALS[country]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def write_demo_data(out: Path, n_train: int = 256, n_eval: int = 32) -> dict[str, Path]:
    return {
        "sft": write_jsonl(out / "sft.jsonl", chat_examples(n_train, seed=0)),
        "sft_eval": write_jsonl(out / "sft_eval.jsonl", chat_examples(n_eval, seed=1)),
        "dpo": write_jsonl(out / "dpo.jsonl", preference_examples(n_train, seed=2)),
        "dpo_eval": write_jsonl(out / "dpo_eval.jsonl", preference_examples(n_eval * 2, seed=3)),
        "rl": write_jsonl(out / "rl.jsonl", prompt_examples(n_train, seed=4)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    for name, path in write_demo_data(args.out).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
