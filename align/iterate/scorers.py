"""Scoring a round's samples and pairing them: a reward function, an LLM judge, or the annotators.

Each scorer takes the round's rows (one per prompt, with its `samples`) and returns a `Scored`: the
pairs in TRL's conversational preference format (with provenance columns), the samples with their
scores, what was dropped and why (counted, never silently), and the round's figures. A round whose
scorer yields no pair raises `NoUsablePairs`, a one-line error that says why, and nothing is trained.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

# Reasons a prompt (reward) or a comparison (judge) makes no pair; the keys of rounds.json's `dropped`.
TIE = "tie"
ORDER_FLIP = "order flip"
JUDGE_ERROR = "judge error"
NO_REWARD = "no reward"
EMPTY = "empty answers"  # fewer than two non-empty answers: an empty answer is never paired (align.dpo refuses it)
PROVENANCE = ("prompt", "samples", "source", "location")  # prompt-row columns that are not reward-function columns


class NoUsablePairs(ValueError):
    """The round yielded no pair to train on (a user-facing error: one line, exit 1)."""


class AwaitingAnnotations(ValueError):
    """The annotators have not finished the round's pairs yet: the run stops; the same command resumes."""


@dataclass
class Scored:
    rows: list[dict]  # the round's rows, each sample with its score(s)
    pairs: list[dict]
    dropped: Counter = field(default_factory=Counter)
    figures: dict = field(default_factory=dict)  # mean_reward / win_rate, comparisons, ...

    def check_usable(self, round_number: int) -> None:
        if self.pairs:
            return
        counts = ", ".join(f"{n} {reason}{'s' if n != 1 and reason in (TIE, ORDER_FLIP, JUDGE_ERROR) else ''}"
                           for reason, n in sorted(self.dropped.items())) or "nothing to compare"
        why = ""
        if self.dropped.get(ORDER_FLIP):
            why = ("; the judge's verdict flipped with the order of the answers (position bias), so no verdict "
                   "can be trusted")
        elif self.dropped.get(TIE):
            why = "; the samples of each prompt scored the same (sample with a higher temperature or more samples)"
        raise NoUsablePairs(f"round {round_number}: no usable pair from {len(self.rows)} prompts ({counts}){why}; "
                            "nothing was trained")


def as_messages(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def preference_pair(row: dict, chosen: dict, rejected: dict, round_number: int, scorer: str, **scores) -> dict:
    """TRL's conversational preference row (prompt, chosen, rejected) plus where it came from."""
    return {"prompt": row["prompt"], "chosen": as_messages(chosen["text"]), "rejected": as_messages(rejected["text"]),
            "prompt_id": row["prompt_id"], "round": round_number, "scorer": scorer, **scores}


def empty_samples(rows: list[dict]) -> int:
    return sum(not s["text"].strip() for row in rows for s in row["samples"])


# ----- reward


def reward_columns(rows: list[dict], k: int) -> dict[str, list]:
    """The prompt rows' other columns (e.g. `answer`, `tests`), one value per sample, as TRL passes them."""
    names = [name for name in rows[0] if name not in PROVENANCE and name != "prompt_id"]
    return {name: [row.get(name) for row in rows for _ in range(k)] for name in names}


def total_rewards(funcs, weights: list[float] | None, rows: list[dict]) -> list[float | None]:
    """Each sample's weighted sum of the reward functions (a function's None: not applicable, left out;
    all None: no reward)."""
    k = len(rows[0]["samples"])
    prompts = [row["prompt"] for row in rows for _ in range(k)]
    completions = [as_messages(sample["text"]) for row in rows for sample in row["samples"]]
    columns = reward_columns(rows, k)
    weights = weights or [1.0] * len(funcs)
    totals: list[float | None] = [None] * len(prompts)
    for func, weight in zip(funcs, weights):
        values = func(prompts=prompts, completions=completions, **columns)
        if len(values) != len(prompts):
            name = getattr(func, "__name__", repr(func))
            raise ValueError(f"reward function {name} returned {len(values)} values for {len(prompts)} completions")
        for i, value in enumerate(values):
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                totals[i] = (totals[i] or 0.0) + weight * float(value)
    return totals


def score_with_rewards(rows: list[dict], args, round_number: int) -> Scored:
    """Every sample gets its reward; each prompt's best vs worst sample make its pair when their rewards
    differ by more than `pair_margin` (equal rewards, or identical texts, are a tie)."""
    from align.rl.rewards import resolve_reward_funcs

    funcs = resolve_reward_funcs(list(args.reward_funcs))
    totals = iter(total_rewards(funcs, args.reward_weights, rows))
    scored_rows, pairs, dropped = [], [], Counter()
    for row in rows:
        samples = [{**sample, "reward": next(totals)} for sample in row["samples"]]
        scored_rows.append({**row, "samples": samples})
        answered = [s for s in samples if s["text"].strip()]
        rated = [s for s in answered if s["reward"] is not None]
        if len(rated) < 2:
            dropped[EMPTY if len(answered) < 2 else NO_REWARD] += 1
            continue
        best = max(rated, key=lambda s: s["reward"])  # the first of equals: repeatable
        worst = min(rated, key=lambda s: s["reward"])
        gap = best["reward"] - worst["reward"]
        if gap <= args.pair_margin or best["text"] == worst["text"]:
            dropped[TIE] += 1
            continue
        pairs.append(preference_pair(row, best, worst, round_number, "reward",
                                     chosen_score=best["reward"], rejected_score=worst["reward"]))
    rewards = [s["reward"] for row in scored_rows for s in row["samples"] if s["reward"] is not None]
    figures = {"mean_reward": sum(rewards) / len(rewards) if rewards else None, "reward_funcs": list(args.reward_funcs),
               "empty_samples": empty_samples(rows)}
    return Scored(scored_rows, pairs, dropped, figures)


# ----- judge


def comparison_outcome(verdict) -> str:
    """'a', 'b', TIE (both orders said tie), ORDER_FLIP (the orders disagreed) or JUDGE_ERROR."""
    if not hasattr(verdict, "winner"):  # a PairwiseJudgeError: an order without any verdict
        return JUDGE_ERROR
    if verdict.winner in ("a", "b"):
        return verdict.winner
    orders = set(verdict.orders.values())
    return TIE if orders == {"tie"} else ORDER_FLIP


def score_with_judge(rows: list[dict], args, round_number: int, cache_dir: Path) -> Scored:
    """Every two different samples of a prompt compared by the judge's FastChat pairwise prompt in both
    orders (align.judging.pairwise, concurrent, cached in `cache_dir`); a comparison counts only when
    both orders agree. A prompt's pair is the agreed comparison between its most and least winning samples."""
    from align.judging.pairwise import judge_pairs

    items, index = [], []  # (row, i, j) per comparison
    dropped = Counter()
    for r, row in enumerate(rows):
        for i, j in combinations(range(len(row["samples"])), 2):
            if not (row["samples"][i]["text"].strip() and row["samples"][j]["text"].strip()):
                dropped[EMPTY] += 1  # an empty answer is never paired
                continue
            if row["samples"][i]["text"] == row["samples"][j]["text"]:
                dropped[TIE] += 1  # the same answer twice: nothing to ask
                continue
            items.append((row["prompt"], row["samples"][i]["text"], row["samples"][j]["text"]))
            index.append((r, i, j))
    started = time.time()
    verdicts = judge_pairs(items, judge=args.judge_config(), cache_dir=cache_dir) if items else []
    outcomes = [comparison_outcome(v) for v in verdicts]
    wins = [[0] * len(row["samples"]) for row in rows]
    games = [[0] * len(row["samples"]) for row in rows]
    agreed: dict[int, list[tuple[int, int]]] = {}
    for (r, i, j), outcome in zip(index, outcomes):
        if outcome in ("a", "b"):
            winner, loser = (i, j) if outcome == "a" else (j, i)
            wins[r][winner] += 1
            agreed.setdefault(r, []).append((winner, loser))
            games[r][i] += 1
            games[r][j] += 1
        else:
            dropped[outcome] += 1
    scored_rows, pairs = [], []
    for r, row in enumerate(rows):
        samples = [{**s, "wins": wins[r][k], "agreed_comparisons": games[r][k]} for k, s in enumerate(row["samples"])]
        scored_rows.append({**row, "samples": samples})
        if r in agreed:
            winner, loser = max(agreed[r], key=lambda pair: wins[r][pair[0]] - wins[r][pair[1]])
            pairs.append(preference_pair(row, samples[winner], samples[loser], round_number, "judge",
                                         chosen_wins=wins[r][winner], rejected_wins=wins[r][loser]))
    rates = [s["wins"] / s["agreed_comparisons"] for row in scored_rows for s in row["samples"] if s["agreed_comparisons"]]
    figures = {"comparisons": len(items), "agreed": sum(o in ("a", "b") for o in outcomes),
               "win_rate": sum(rates) / len(rates) if rates else None, "judge_seconds": round(time.time() - started, 3),
               "judge_calls": sum(len(getattr(v, "raw", [])) for v in verdicts), "empty_samples": empty_samples(rows)}
    return Scored(scored_rows, pairs, dropped, figures)


# ----- annotators


def score_with_annotators(rows: list[dict], args, round_number: int, round_dir: Path) -> Scored:
    """The round's pairs (one per prompt: its first two different samples) pushed to Argilla with the gold
    pairs, if any; once every pair has `min_submitted` responses (waiting up to `wait_s`), the consensus is
    pulled (annotation pull's rules) and becomes the round's pairs. The gold pairs score the annotators (a
    flagged annotator's votes decide nothing) and are counted in the figures, never trained on. Not
    finished: `AwaitingAnnotations` (`wait_s` 0: push, look once, stop)."""
    from annotation.connection import connect
    from annotation.errors import AnnotationError
    from annotation.logic.pairs import Completion, PromptRow, make_pairs, parse_rows, read_input_rows
    from annotation.logic.resolve import Policy
    from annotation.pull import pull_preferences
    from annotation.push import push_pairs
    from annotation.status import wait_until_annotated

    settings = args.annotator_settings
    dataset = f"{settings.dataset_prefix}-round-{round_number}"
    prompt_rows, dropped = [], Counter()
    for row in rows:
        distinct = list(dict.fromkeys(s["text"] for s in row["samples"] if s["text"].strip()))
        if len(distinct) < 2:
            dropped[TIE if len(distinct) else EMPTY] += 1
            continue
        completions = tuple(Completion(f"round-{round_number}-sample-{k}", text) for k, text in enumerate(distinct[:2]))
        prompt_rows.append(PromptRow(row["location"], str(row["prompt_id"]), tuple(row["prompt"]), completions))
    pairs, _ = make_pairs(prompt_rows, seed=args.seed)
    gold = []
    if settings.gold_pairs:  # they score the annotators (annotation pull's quality control), never trained on
        gold = make_pairs(parse_rows(read_input_rows(Path(settings.gold_pairs))).rows, seed=args.seed)[0]
    round_pairs, pairs = len(pairs), pairs + gold
    client, _ = connect(Path(settings.data_dir) if settings.data_dir else None)
    if pairs:  # pushing again on resume sends nothing: push finds the records by their ids
        push_pairs(client, pairs, dataset, settings.workspace, min_submitted=settings.min_submitted, progress=False)
        try:
            wait_until_annotated(client, settings.workspace, dataset, timeout_s=settings.wait_s, poll_s=settings.poll_s)
        except AnnotationError as waited:
            raise AwaitingAnnotations(f"round {round_number}: {waited}; annotate the rest, then run the same command "
                                      "again to resume (or set annotators.wait_s to wait)") from None
    pairs_out, quality = [], {"gold_pairs": 0, "flagged_annotators": []}
    if pairs:
        card = pull_preferences(client, dataset, settings.workspace, round_dir / "annotations",
                                Policy(min_agreement=settings.min_agreement))
        dropped.update({reason: n for reason, n in card["dropped"].items() if n and reason != "gold"})
        quality = card["quality_control"]  # gold_pairs: pulled, recognised as gold and not written
        import datasets

        for pulled in datasets.load_from_disk(str(round_dir / "annotations")):
            pairs_out.append({**pulled, "round": round_number, "scorer": "annotators"})
    figures = {"pushed": len(pairs), "round_pairs_pushed": round_pairs, "gold_pairs_pushed": len(gold),
               "gold_pairs_pulled": quality["gold_pairs"], "flagged_annotators": quality["flagged_annotators"],
               "dataset": f"{settings.workspace}/{dataset}"}
    return Scored(rows, pairs_out, dropped, figures)


def score_round(rows: list[dict], args, round_number: int, round_dir: Path, cache_dir: Path) -> Scored:
    if args.scorer == "reward":
        return score_with_rewards(rows, args, round_number)
    if args.scorer == "judge":
        return score_with_judge(rows, args, round_number, cache_dir)
    return score_with_annotators(rows, args, round_number, round_dir)
