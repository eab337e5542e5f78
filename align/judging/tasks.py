"""Judge tasks: one judge prompt to send, with everything a result row needs to name it.

The matches are FastChat's (gen_judgment.py: turn 1 and turn 2 of every question; pairwise
against a baseline, both orders) and THUDM's (judge.py: every question once).
"""

from __future__ import annotations

from dataclasses import dataclass

from align.data.benchmarks import AlignBench, MTBench
from .prompts import (
    ALIGNBENCH_PROMPT_NAME,
    Messages,
    alignbench_messages,
    alignbench_prompt_hash,
    mt_bench_pair_messages,
    mt_bench_single_messages,
    mt_bench_template_hash,
)

MT_BENCH = "mt_bench"
MT_BENCH_PAIR = "mt_bench_pair"
ALIGNBENCH = "alignbench"
# Upstream request sizes: FastChat asks the judge for at most 2048 tokens; THUDM sets no limit.
DEFAULT_JUDGE_MAX_TOKENS = {MT_BENCH: 2048, MT_BENCH_PAIR: 2048, ALIGNBENCH: None}


@dataclass(frozen=True)
class JudgeTask:
    benchmark: str
    question_id: int
    turn: int
    category: str
    model: str
    judge_prompt: str  # template name, e.g. "single-math-v1-multi-turn"
    prompt_hash: str  # hash of that template (and, for AlignBench, its dimension config)
    messages: Messages
    max_tokens: int | None
    subcategory: str | None = None
    dimensions: tuple[str, ...] = ()
    baseline: str | None = None  # pairwise: the opponent (the baseline, or the other model of the pair)
    game: int | None = None  # pairwise: 1 = the model is assistant A, 2 = the opponent is A
    pairing: str | None = None  # pairwise: "baseline" (every model against one) or "all" (every pair)

    @property
    def item_key(self) -> tuple:
        """What repeats of this task share (one scored item)."""
        return (self.benchmark, self.model, self.baseline, self.question_id, self.turn, self.game)


def select_questions(
    questions: list[dict], per_category: int | None = None, question_ids: tuple[int, ...] | None = None
) -> list[dict]:
    """All questions, or a labelled subset: the given ids and/or the first `per_category` of each category."""
    if question_ids is not None:
        unknown = sorted(set(question_ids) - {q["question_id"] for q in questions})
        if unknown:
            raise KeyError(f"no question with id {unknown}")
        questions = [q for q in questions if q["question_id"] in set(question_ids)]
    if per_category is None:
        return questions
    taken: dict[str, int] = {}
    chosen = []
    for question in questions:
        if taken.get(question["category"], 0) < per_category:
            taken[question["category"]] = taken.get(question["category"], 0) + 1
            chosen.append(question)
    return chosen


def _max_tokens(benchmark: str, override: int | None) -> int | None:
    return override if override is not None else DEFAULT_JUDGE_MAX_TOKENS[benchmark]


def mt_bench_single_tasks(
    bench: MTBench,
    questions: list[dict],
    answers: dict[str, dict[int, list[str]]],
    *,
    max_tokens: int | None = None,
) -> list[JudgeTask]:
    tasks = []
    for model, model_answers in answers.items():
        for question in questions:
            answer = model_answers[question["question_id"]]
            for turn in (1, 2):
                name, messages = mt_bench_single_messages(bench, question, answer, turn)
                tasks.append(
                    JudgeTask(
                        benchmark=MT_BENCH,
                        question_id=question["question_id"],
                        turn=turn,
                        category=question["category"],
                        model=model,
                        judge_prompt=name,
                        prompt_hash=mt_bench_template_hash(bench.judge_prompts[name]),
                        messages=messages,
                        max_tokens=_max_tokens(MT_BENCH, max_tokens),
                    )
                )
    return tasks


def mt_bench_pair_tasks(
    bench: MTBench,
    questions: list[dict],
    answers: dict[str, dict[int, list[str]]],
    baseline: str | None,
    *,
    max_tokens: int | None = None,
) -> list[JudgeTask]:
    """Each pair judged in both orders (FastChat's g1 and g2): every model against `baseline`
    (FastChat's pairwise-baseline), or with `baseline=None` every pair of models, the first in
    sorted order as model_1 (FastChat's pairwise-all)."""
    if baseline is not None and baseline not in answers:
        raise KeyError(f"pairwise: no answers for the baseline model {baseline!r}; have {sorted(answers)}")
    models = sorted(answers)
    if baseline is not None:
        matches = [(model, baseline) for model in models if model != baseline]
    else:
        matches = [(first, second) for i, first in enumerate(models) for second in models[i + 1:]]
    tasks = []
    for model, opponent in matches:
        for question in questions:
            qid = question["question_id"]
            for turn in (1, 2):
                for game, (first, second) in ((1, (answers[model], answers[opponent])),
                                              (2, (answers[opponent], answers[model]))):
                    name, messages = mt_bench_pair_messages(bench, question, first[qid], second[qid], turn)
                    tasks.append(
                        JudgeTask(
                            benchmark=MT_BENCH_PAIR,
                            question_id=qid,
                            turn=turn,
                            category=question["category"],
                            model=model,
                            judge_prompt=name,
                            prompt_hash=mt_bench_template_hash(bench.judge_prompts[name]),
                            messages=messages,
                            max_tokens=_max_tokens(MT_BENCH_PAIR, max_tokens),
                            baseline=opponent,
                            game=game,
                            pairing="all" if baseline is None else "baseline",
                        )
                    )
    return tasks


def alignbench_tasks(
    bench: AlignBench,
    questions: list[dict],
    answers: dict[str, dict[int, str]],
    *,
    max_tokens: int | None = None,
) -> list[JudgeTask]:
    prompt_hash = alignbench_prompt_hash(bench)
    tasks = []
    for model, model_answers in answers.items():
        for question in questions:
            dimensions, messages = alignbench_messages(bench, question, model_answers[question["question_id"]])
            tasks.append(
                JudgeTask(
                    benchmark=ALIGNBENCH,
                    question_id=question["question_id"],
                    turn=1,
                    category=question["category"],
                    model=model,
                    judge_prompt=ALIGNBENCH_PROMPT_NAME,
                    prompt_hash=prompt_hash,
                    messages=messages,
                    max_tokens=_max_tokens(ALIGNBENCH, max_tokens),
                    subcategory=question["subcategory"],
                    dimensions=tuple(dimensions),
                )
            )
    return tasks
