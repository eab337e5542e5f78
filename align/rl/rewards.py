"""Reward functions for the RL stage, with TRL's signature, and how a recipe names them.

TRL 1.16's `GRPOTrainer._calculate_rewards` calls each function as
`f(prompts=..., completions=..., completion_ids=..., **columns, trainer_state=, log_extra=, log_metric=)`
where `columns` are the dataset's other columns, one value per completion; it wants one float (or
None) per completion back. A recipe names them in `reward_funcs`: a built-in name (`math`, `code`,
`think_format`) or a dotted path to any such function (`mypkg.rewards.my_reward`);
`resolve_reward_funcs` turns the names into the functions.

- `math_reward`: 1.0 when the last `\\boxed{}` of the final answer equals the reference answer
  mathematically (math-verify, in a worker process with a hard time limit), else 0.0.
- `code_reward`: the fraction of the row's tests that the final answer's last ```python block passes,
  run in the sandbox (`align.rl.sandbox`).
- `think_format`: the Klear team's penalties, -0.5 without `</think>`, -2.0 with `</think>` but
  without `<think>`, else 0.0.

The final answer is the text after the last `</think>`; a completion that opens `<think>` and never
closes it has none (everything it wrote is thinking); one with neither tag is all answer.

Each call also hands per-completion details to TRL's `log_extra` (columns `math_detail` and
`code_detail`, one JSON string per completion, saved with TRL's completion tables) and counts to
`log_metric`; `score_math` and `score_code` return the same details as objects for a trainer that
records rollouts itself.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable

from align.data.sources import DataError

from .completions import THINK_END, THINK_START, completion_text, final_answer, last_boxed

# The Klear team's penalties (verl/utils/reward_score/reward_config.py, ScoringConfig, in
# suu990901/KlearReasoner): a completion without the closing tag, and one without the opening tag.
MISSING_THINK_END_PENALTY = -0.5
MISSING_THINK_START_PENALTY = -2.0

# --- think_format ------------------------------------------------------------------------------


def think_format(completions, **kwargs) -> list[float]:
    """-0.5 without `</think>`, -2.0 with `</think>` but without `<think>` before it, else 0.0.

    The team applies these to the completion alone: with a chat template whose generation prompt
    already opens `<think>`, the model never writes it, and this function would punish every rollout."""
    rewards = []
    for completion in completions:
        text = completion_text(completion)
        if THINK_END not in text:
            rewards.append(MISSING_THINK_END_PENALTY)
        elif THINK_START not in text[: text.rfind(THINK_END)]:
            rewards.append(MISSING_THINK_START_PENALTY)
        else:
            rewards.append(0.0)
    return rewards


# --- math --------------------------------------------------------------------------------------

_verifier = None


def _math_verifier():
    global _verifier
    if _verifier is None:
        from .rewards_math import MathVerifier

        _verifier = MathVerifier()
    return _verifier


def reference_answers(answer=None, reward_model=None, n: int = 0) -> list:
    """The reference answer per row: the `answer` column, or the Klear sets' `reward_model.ground_truth` (one
    answer, or a list of acceptable ones)."""
    if answer is not None:
        return list(answer)
    if reward_model is not None:
        return [r.get("ground_truth") if isinstance(r, dict) else None for r in reward_model]
    raise DataError("math reward: the rows have neither an `answer` nor a `reward_model` column")


def score_math(completions, references, verifier=None) -> list[dict]:
    """Per completion: `{"reward", "reason", "extracted"}`; reasons: equal, not_equal, no_final_answer,
    no_boxed_answer, unparsable_answer, unparsable_reference, timeout, error: ..."""
    verifier = verifier or _math_verifier()
    details = []
    for i, (completion, reference) in enumerate(zip(completions, references, strict=True)):
        acceptable = reference if isinstance(reference, list) else [reference]  # verl's ground_truth may list several
        if not acceptable or any(r is None or (isinstance(r, str) and not r.strip()) for r in acceptable):
            raise DataError(f"math reward: row {i}: field `answer`: empty reference answer")
        answer = final_answer(completion_text(completion))
        boxed = None if answer is None else last_boxed(answer)
        if boxed is None:
            reason = "no_final_answer" if answer is None else "no_boxed_answer"
            details.append({"reward": 0.0, "reason": reason, "extracted": None})
            continue
        for answer in acceptable:
            verdict = verifier.check(boxed, str(answer))
            if verdict.correct:
                break
        details.append({"reward": 1.0 if verdict.correct else 0.0, "reason": verdict.reason, "extracted": boxed})
    return details


def math_reward(completions, answer=None, reward_model=None, log_extra=None, log_metric=None, **kwargs):
    """1.0 when the final `\\boxed{}` answer equals `answer` mathematically, else 0.0 (see `score_math`)."""
    details = score_math(completions, reference_answers(answer, reward_model))
    _log(details, "math_detail", "math", log_extra, log_metric)
    return [d["reward"] for d in details]


# --- code --------------------------------------------------------------------------------------


def code_reward(
    completions, tests=None, input_output=None, reward_model=None, log_extra=None, log_metric=None, **kwargs
):
    """The fraction of the row's tests passed by the final answer's last ```python block (see `score_code`).

    Tests come from the `tests` column, else TACO/APPS's `input_output`, else the Klear sets'
    `reward_model.ground_truth`; `align.rl.rewards_code.check_tests_column` documents the formats."""
    from .rewards_code import score_code, tests_per_row

    details = score_code(completions, tests_per_row(tests, input_output, reward_model, len(completions)))
    _log(details, "code_detail", "code", log_extra, log_metric)
    return [d["reward"] for d in details]


def _log(details: list[dict], column: str, prefix: str, log_extra, log_metric) -> None:
    if log_extra is not None:
        log_extra(column, [json.dumps(d, ensure_ascii=False) for d in details])
    if log_metric is not None and details:
        reasons = [d["reason"] for d in details]
        for reason in sorted(set(reasons)):
            log_metric(f"{prefix}/{reason.split(':')[0]}", reasons.count(reason) / len(reasons))


# --- resolution --------------------------------------------------------------------------------

BUILTIN_REWARDS: dict[str, Callable] = {"math": math_reward, "code": code_reward, "think_format": think_format}


def resolve_reward_funcs(names: list[str]) -> list[Callable]:
    """Built-in names (`math`, `code`, `think_format`) and dotted paths (`mypkg.rewards.my_reward`) to
    the functions; an unknown name or something that is not callable is a one-line ValueError naming it."""
    resolved = []
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"reward_funcs: {name!r} is not a reward name (built-in: {', '.join(BUILTIN_REWARDS)})")
        name = name.strip()
        if name in BUILTIN_REWARDS:
            resolved.append(BUILTIN_REWARDS[name])
            continue
        module_name, _, attribute = name.rpartition(".")
        if not module_name:
            raise ValueError(
                f"reward_funcs: unknown reward {name!r} (built-in: {', '.join(BUILTIN_REWARDS)}; "
                "or a dotted path such as mypkg.rewards.my_reward)"
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ValueError(f"reward_funcs: cannot import {module_name!r} for reward {name!r}: {error}") from None
        function = getattr(module, attribute, None)
        if function is None:
            raise ValueError(f"reward_funcs: module {module_name!r} has no {attribute!r} (reward {name!r})")
        if not callable(function):
            raise ValueError(f"reward_funcs: {name!r} is a {type(function).__name__}, not a callable")
        resolved.append(function)
    return resolved
