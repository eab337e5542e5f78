"""Pairwise suggestions for annotation: which of two answers to a prompt is better, and how sure.

    from align.judging.pairwise import judge_pair
    verdict = judge_pair([{"role": "user", "content": "Explain DPO"}], answer_a, answer_b)
    verdict.winner      # "a", "b" or "tie"
    verdict.confidence  # share of the 2 x repeats judge calls (both orders) that agree with it
    verdict.judge_model, verdict.raw  # raw: every judgment text, order AB then BA per repeat

The judge prompt is chosen as FastChat's `run_judge_pair` chooses it, asked in both orders (A/B
and B/A), as MT-Bench does: `a` or `b` wins only if the verdicts agree; a tie in either order or
a disagreement is a tie; an order without any parseable verdict makes the pair an error
(`PairwiseJudgeError`), never a win from the other order alone.

    prompt                                   reference=None        reference given
    [user]                                   pair-v2               pair-math-v1 (one reference)
    [user, assistant, user]                  pair-v2-multi-turn    pair-math-v1-multi-turn (one per user turn)
    anything else (system message, longer)   pair-v2 with the conversation written out as the question

In the multi-turn templates both assistants' first answer is the conversation's assistant turn
(the pair differs only in the last answer), exactly as FastChat fills them.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from align.data.benchmarks import load_mt_bench
from .client import JudgeAPIError, JudgeCache, JudgeClient, JudgeEndpointError
from .config import JudgeConfig
from .parsing import JudgmentParseError, parse_pair_verdict
from .prompts import Messages, pair_messages


class PairwiseJudgeError(RuntimeError):
    """An order of the pair produced no parseable verdict; `raw` holds what the judge said."""

    def __init__(self, message: str, raw: list[str]):
        super().__init__(message)
        self.raw = raw


@dataclass(frozen=True)
class PairVerdict:
    winner: str  # "a" | "b" | "tie"
    confidence: float  # 0..1
    judge_model: str
    raw: list[str] = field(default_factory=list)
    votes: dict[str, int] = field(default_factory=dict)  # per-call verdicts mapped to a/b/tie
    failed_calls: int = 0
    # each order's verdict mapped to a/b/tie: {"ab": ..., "ba": ...}; a tie overall is either both orders
    # saying tie or the two orders disagreeing (position bias), which callers may count apart
    orders: dict[str, str | None] = field(default_factory=dict)


def prompt_as_question(prompt_messages: Messages) -> str:
    """The text for pair-v2's {question} slot when the conversation has no FastChat template of its own."""
    if len(prompt_messages) == 1 and prompt_messages[0]["role"] == "user":
        return prompt_messages[0]["content"]
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"{names.get(m['role'], m['role'])}: {m['content']}" for m in prompt_messages)


def pair_prompts(
    prompt_messages: Messages, answer_a: str, answer_b: str, reference: str | list[str] | None = None
) -> tuple[str, Messages, Messages]:
    """(template name, messages with A first, messages with B first); see the module docstring."""
    bench = load_mt_bench()
    references = [reference] if isinstance(reference, str) else (list(reference) if reference is not None else None)
    roles = [m["role"] for m in prompt_messages]
    if roles == ["user", "assistant", "user"]:
        questions = [prompt_messages[0]["content"], prompt_messages[2]["content"]]
        shared = prompt_messages[1]["content"]
        answers_a, answers_b = [shared, answer_a], [shared, answer_b]
        if references is not None and len(references) != 2:
            raise ValueError("a two-turn prompt needs a reference answer for each user turn (pair-math-v1-multi-turn)")
    else:
        questions, answers_a, answers_b = [prompt_as_question(prompt_messages)], [answer_a], [answer_b]
        references = references[-1:] if references else references
    name, first = pair_messages(bench, questions, answers_a, answers_b, references)
    _, swapped = pair_messages(bench, questions, answers_b, answers_a, references)
    return name, first, swapped


def combine_votes(game_ab: str | None, game_ba: str | None) -> str | None:
    """Verdicts already mapped to a/b/tie: the two orders must agree for a winner. An order without
    a verdict leaves the pair undecided (None), as FastChat drops a match with an error in either game."""
    if game_ab is None or game_ba is None:
        return None
    if game_ab == "tie" or game_ab != game_ba:
        return "tie"
    return game_ab


def modal_verdict(counts: Counter) -> str | None:
    """The most common verdict; equally common different verdicts make a tie."""
    ranked = counts.most_common()
    if not ranked:
        return None
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return "tie"
    return ranked[0][0]


def _call(client: JudgeClient, messages: Messages, sample: list[int], max_tokens: int) -> tuple[str, str | None]:
    """(raw judgment, verdict A/B/tie or None)."""
    try:
        result = client.complete(messages, max_tokens=max_tokens, sample=sample)
    except JudgeEndpointError:
        raise
    except JudgeAPIError as err:
        return f"<api error: {err}>", None
    try:
        return result.content, parse_pair_verdict(result.content)
    except JudgmentParseError:
        return result.content, None


def judge_pair(
    prompt_messages: Messages,
    answer_a: str,
    answer_b: str,
    *,
    reference: str | list[str] | None = None,
    judge: JudgeConfig | None = None,
    client: JudgeClient | None = None,
    cache_dir: str | Path | None = None,
) -> PairVerdict:
    """Judge A vs B in both orders, `judge.repeats` times each (judge from the environment when not
    given). Unparseable judgments are retried up to `judge.parse_retries` times and then left out of
    the vote; raises PairwiseJudgeError when an order got no verdict at all."""
    if client is None:
        judge = judge or JudgeConfig.from_mapping({})
        client = JudgeClient(judge, JudgeCache(cache_dir) if cache_dir else None)
    config = client.config
    _, first, swapped = pair_prompts(prompt_messages, answer_a, answer_b, reference)
    orders = {"ab": first, "ba": swapped}
    to_ab = {"ab": {"A": "a", "B": "b", "tie": "tie"}, "ba": {"A": "b", "B": "a", "tie": "tie"}}
    max_tokens = config.max_tokens or 2048
    raw: list[str] = []
    votes: list[tuple[str, str]] = []  # (order, a/b/tie)
    failed = 0
    for repeat in range(config.repeats):
        for order, messages in orders.items():
            for attempt in range(config.parse_retries + 1):
                text, verdict = _call(client, messages, [repeat, attempt], max_tokens)
                raw.append(text)
                if verdict is not None:
                    votes.append((order, to_ab[order][verdict]))
                    break
                failed += 1
    modal = {order: modal_verdict(Counter(v for o, v in votes if o == order)) for order in orders}
    winner = combine_votes(modal["ab"], modal["ba"])
    if winner is None:
        without = [order.upper() for order in orders if modal[order] is None]
        raise PairwiseJudgeError(
            f"judge {config.model} gave no parseable verdict in order {' and '.join(without)} "
            f"({len(raw)} call(s)); both orders are needed to control position bias", raw)
    tally = Counter(v for _, v in votes)
    return PairVerdict(
        winner=winner,
        # Failed calls count against the verdict.
        confidence=round(tally[winner] / (2 * config.repeats), 4),
        judge_model=config.model,
        raw=raw,
        votes=dict(tally),
        failed_calls=failed,
        orders=modal,
    )


def judge_pairs(
    items: list[tuple[Messages, str, str]] | list[tuple[Messages, str, str, str | list[str] | None]],
    *,
    judge: JudgeConfig | None = None,
    cache_dir: str | Path | None = None,
) -> list[PairVerdict | PairwiseJudgeError]:
    """`judge_pair` over many (prompt_messages, answer_a, answer_b[, reference]), `judge.concurrency` at a time.
    A pair that failed comes back as its PairwiseJudgeError, in place, so nothing is dropped."""
    judge = judge or JudgeConfig.from_mapping({})
    client = JudgeClient(judge, JudgeCache(cache_dir) if cache_dir else None)
    client.preflight()  # a dead endpoint fails here, once, with the reason

    def one(item: tuple) -> PairVerdict | PairwiseJudgeError:
        try:
            return judge_pair(item[0], item[1], item[2], reference=item[3] if len(item) > 3 else None, client=client)
        except PairwiseJudgeError as err:
            return err

    with ThreadPoolExecutor(max_workers=judge.concurrency) as pool:
        return list(pool.map(one, items))
