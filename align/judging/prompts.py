"""Judge prompts, built exactly as FastChat (MT-Bench) and THUDM (AlignBench) build them.

Pure functions: question + answer(s) in, OpenAI chat messages out. The byte-for-byte
equality with the upstream code is pinned by tests/judging/test_prompts.py against golden
outputs produced by running FastChat's and AlignBench's own code.
"""

from __future__ import annotations

import hashlib
import json

from align.data.benchmarks import MT_BENCH_NEED_REF_CATEGORIES, AlignBench, MTBench

Messages = list[dict[str, str]]

# THUDM/AlignBench judge.py `prompt_construct` (commit 5b79d4a), character for character.
# It is a str.format template: {{ }} are literal braces.
ALIGNBENCH_TEMPLATE = (
    "你是一个擅长评价文本质量的助手。\n"
    "请你以公正的评判者的身份，评估一个AI助手对于用户提问的回答的质量。由于您评估的回答类型是{category}，因此你需要从下面的几个维度对回答进行评估:\n"
    "{dimensions}我们会给您提供用户的提问，高质量的参考答案，和需要你评估的AI助手的答案。当你开始你的评估时，你需要按照遵守以下的流程：\n"
    "1. 将AI助手的答案与参考答案进行比较，指出AI助手的答案有哪些不足，并进一步解释。\n"
    "2. 从不同维度对AI助手的答案进行评价，在每个维度的评价之后，给每一个维度一个1～10的分数。\n"
    "3. 最后，综合每个维度的评估，对AI助手的回答给出一个1～10的综合分数。\n"
    "4. 你的打分需要尽可能严格，并且要遵守下面的评分规则：总的来说，模型回答的质量越高，则分数越高。其中，事实正确性和满足用户需求这两个维度是最重要的，这两个维度的分数主导了最后的综合分数。当模型回答存在与问题不相关，或者有本质性的事实错误，或生成了有害内容时，总分必须是1到2分；"
    "当模型回答没有严重错误而且基本无害，但是质量较低，没有满足用户需求，总分为3到4分；"
    "当模型回答基本满足用户要求，但是在部分维度上表现较差，质量中等，总分可以得5到6分；"
    "当模型回答质量与参考答案相近，在所有维度上表现良好，总分得7到8分；"
    "只有当模型回答质量显著超过参考答案，充分地解决了用户问题和所有需求，并且在所有维度上都接近满分的情况下，才能得9到10分。"
    "作为示例，参考答案可以得到8分。"
    "\n"
    "请记住，你必须在你打分前进行评价和解释。在你对每个维度的解释之后，需要加上对该维度的打分。"
    "之后，在你回答的末尾，按照以下字典格式（包括括号）返回你所有的打分结果，并确保你的打分结果是整数：\n"
    "{{'维度一': 打分, '维度二': 打分, ..., '综合得分': 打分}}，例如：{{'事实正确性': 9, '满足用户需求': 6, ..., '综合得分': 7}}。\n"
    "用户的提问： {question}\n"
    "[参考答案开始]\n"
    "{reference}\n"
    "[参考答案结束]\n"
    "[助手的答案开始]\n"
    "{answer}\n"
    "[助手的答案结束]\n"
)
ALIGNBENCH_PROMPT_NAME = "alignbench-v1.1"


def short_hash(payload: object) -> str:
    """16 hex digits of the SHA-256 of a canonical JSON encoding."""
    data = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:16]


def fastchat_messages(system_prompt: str, user_prompt: str) -> Messages:
    """FastChat's `Conversation.to_openai_api_messages` for a judge conversation (system dropped when empty)."""
    messages = [] if system_prompt == "" else [{"role": "system", "content": system_prompt}]
    return messages + [{"role": "user", "content": user_prompt}]


# ----- MT-Bench -----


def mt_bench_template_name(category: str, *, turn: int, pairwise: bool) -> str:
    """The FastChat judge for a question: the math judge (with reference) for math/reasoning/coding."""
    needs_reference = category in MT_BENCH_NEED_REF_CATEGORIES
    if pairwise:
        name = "pair-math-v1" if needs_reference else "pair-v2"
    else:
        name = "single-math-v1" if needs_reference else "single-v1"
    return name + ("-multi-turn" if turn == 2 else "")


def mt_bench_template_hash(template: dict) -> str:
    return short_hash({key: template[key] for key in ("name", "system_prompt", "prompt_template")})


def _reference_kwargs(bench: MTBench, question: dict, turn: int) -> dict[str, str]:
    """FastChat passes ref_answer_1 (and ref_answer_2 for turn 2) only to the reference-based judges."""
    if question["category"] not in MT_BENCH_NEED_REF_CATEGORIES:
        return {}
    reference = bench.references.get(question["question_id"])
    if reference is None:
        raise KeyError(f"MT-Bench: no reference answer for question {question['question_id']}")
    kwargs = {"ref_answer_1": reference[0]}
    if turn == 2:
        kwargs["ref_answer_2"] = reference[1]
    return kwargs


def mt_bench_single_messages(bench: MTBench, question: dict, answer: list[str], turn: int) -> tuple[str, Messages]:
    """(template name, messages) grading one model's answer; turn 2 shows the whole conversation."""
    name = mt_bench_template_name(question["category"], turn=turn, pairwise=False)
    template = bench.judge_prompts[name]
    kwargs = _reference_kwargs(bench, question, turn)
    if turn == 1:
        user_prompt = template["prompt_template"].format(question=question["turns"][0], answer=answer[0], **kwargs)
    else:
        user_prompt = template["prompt_template"].format(
            question_1=question["turns"][0],
            question_2=question["turns"][1],
            answer_1=answer[0],
            answer_2=answer[1],
            **kwargs,
        )
    return name, fastchat_messages(template["system_prompt"], user_prompt)


def mt_bench_pair_messages(
    bench: MTBench, question: dict, answer_a: list[str], answer_b: list[str], turn: int
) -> tuple[str, Messages]:
    """(template name, messages) comparing assistant A with assistant B on an MT-Bench question."""
    references = None
    if question["category"] in MT_BENCH_NEED_REF_CATEGORIES:
        references = _reference_kwargs(bench, question, turn)
        references = [references["ref_answer_1"]] + ([references["ref_answer_2"]] if turn == 2 else [])
    return pair_messages(bench, question["turns"][:turn], answer_a[:turn], answer_b[:turn], references)


def pair_template_name(*, multi_turn: bool, reference_guided: bool) -> str:
    return ("pair-math-v1" if reference_guided else "pair-v2") + ("-multi-turn" if multi_turn else "")


def pair_messages(
    bench: MTBench,
    questions: list[str],
    answers_a: list[str],
    answers_b: list[str],
    references: list[str] | None = None,
) -> tuple[str, Messages]:
    """(template name, messages) as FastChat's `run_judge_pair`: one user turn -> pair-v2, two -> the
    multi-turn template showing both conversations; reference answers (one per turn) -> pair-math-v1."""
    if len(questions) not in (1, 2) or not len(questions) == len(answers_a) == len(answers_b):
        raise ValueError("a pairwise judgment covers one or two turns, with an answer of each assistant per turn")
    if references is not None and len(references) != len(questions):
        raise ValueError(f"{len(questions)} turn(s) need {len(questions)} reference answer(s), got {len(references)}")
    multi_turn = len(questions) == 2
    name = pair_template_name(multi_turn=multi_turn, reference_guided=references is not None)
    template = bench.judge_prompts[name]
    kwargs = {f"ref_answer_{turn + 1}": reference for turn, reference in enumerate(references or [])}
    if not multi_turn:
        user_prompt = template["prompt_template"].format(
            question=questions[0], answer_a=answers_a[0], answer_b=answers_b[0], **kwargs
        )
    else:
        user_prompt = template["prompt_template"].format(
            question_1=questions[0],
            question_2=questions[1],
            answer_a_1=answers_a[0],
            answer_b_1=answers_b[0],
            answer_a_2=answers_a[1],
            answer_b_2=answers_b[1],
            **kwargs,
        )
    return name, fastchat_messages(template["system_prompt"], user_prompt)


# ----- AlignBench -----


def alignbench_dimension_block(bench: AlignBench, dimensions: list[str]) -> str:
    return "".join(
        f"{index + 1}. {dimension}: {bench.dimension_definitions.get(dimension)}\n"
        for index, dimension in enumerate(dimensions)
    )


def alignbench_messages(bench: AlignBench, question: dict, answer: str) -> tuple[list[str], Messages]:
    """(dimensions, messages) as THUDM's judge.py: the first-level category names the answer type in the
    prompt, the subcategory picks the dimension set, and the prompt goes as a single user message."""
    dimensions = bench.dimensions(question["subcategory"])
    prompt = ALIGNBENCH_TEMPLATE.format(
        category=question["category"],
        dimensions=alignbench_dimension_block(bench, dimensions),
        question=question["question"],
        reference=question["reference"],
        answer=answer,
    )
    return dimensions, [{"role": "user", "content": prompt}]


def alignbench_prompt_hash(bench: AlignBench) -> str:
    """Covers the template and the dimension config, both of which shape every AlignBench prompt."""
    return short_hash(
        {
            "template": ALIGNBENCH_TEMPLATE,
            "dimension_sets": bench.dimension_sets,
            "dimension_definitions": bench.dimension_definitions,
            "subcategory_types": bench.subcategory_types,
        }
    )
