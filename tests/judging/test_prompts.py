"""Prompt construction, byte for byte against the upstream code's own output.

tests/judging/golden/*.json were written by golden/regenerate.py, which runs FastChat's
`run_judge_single` / `run_judge_pair` and THUDM's `prompt_construct` and records exactly what
they would send to the judge.
"""

import hashlib

import pytest

from align.data.benchmarks import load_alignbench, load_mt_bench
from align.judging.prompts import (
    alignbench_messages,
    mt_bench_pair_messages,
    mt_bench_single_messages,
    mt_bench_template_name,
)

from judging_support import FASTCHAT, THUDM, needs_alignbench


@pytest.fixture(scope="module")
def bench():
    return load_mt_bench()


@pytest.mark.parametrize("case", FASTCHAT["prompt_cases"], ids=lambda c: f"{c['template']}-q{c['question_id']}-t{c['turn']}")
def test_mt_bench_messages_equal_fastchat(bench, case):
    question = bench.question(case["question_id"])
    if case["kind"] == "single":
        name, messages = mt_bench_single_messages(bench, question, case["answer"], case["turn"])
    else:
        name, messages = mt_bench_pair_messages(bench, question, case["answer_a"], case["answer_b"], case["turn"])
    assert name == case["template"]
    assert messages == case["messages"]  # system + user, every byte
    assert case["temperature"] == 0 and case["max_tokens"] == 2048  # what our client sends for MT-Bench


def test_golden_cases_cover_every_template_and_the_reference_categories():
    templates = {case["template"] for case in FASTCHAT["prompt_cases"]}
    assert templates == {
        "single-v1", "single-v1-multi-turn", "single-math-v1", "single-math-v1-multi-turn",
        "pair-v2", "pair-v2-multi-turn", "pair-math-v1", "pair-math-v1-multi-turn",
    }


def test_reference_answers_go_only_to_math_reasoning_coding(bench):
    for question in bench.questions:
        name = mt_bench_template_name(question["category"], turn=1, pairwise=False)
        assert ("math" in name) == (question["category"] in ("math", "reasoning", "coding"))
        _, messages = mt_bench_single_messages(bench, question, ["x", "y"], 2)
        has_reference = "<|The Start of Reference Answer|>" in messages[-1]["content"]
        assert has_reference == (question["category"] in ("math", "reasoning", "coding"))


@needs_alignbench
@pytest.mark.parametrize("case", THUDM["prompt_cases"], ids=lambda c: c["sample"]["subcategory"])
def test_alignbench_prompt_equals_thudm(case):
    sample = case["sample"]
    question = {k: sample[k] for k in ("category", "subcategory", "question", "reference")}
    dimensions, messages = alignbench_messages(load_alignbench(), question, sample["answer"])
    assert dimensions == case["dimensions"]
    assert [m["role"] for m in messages] == ["user"]  # THUDM sends the prompt as one user message
    prompt = messages[0]["content"]
    assert len(prompt) == case["prompt_chars"]
    assert hashlib.sha256(prompt.encode("utf-8")).hexdigest() == case["prompt_sha256"]


@needs_alignbench
def test_alignbench_names_the_first_level_category_and_the_subcategory_dimensions():
    bench = load_alignbench()
    question = next(q for q in bench.questions if q["subcategory"] == "初等数学")
    dimensions, messages = alignbench_messages(bench, question, "答案")
    assert f"由于您评估的回答类型是{question['category']}，" in messages[0]["content"]
    assert dimensions == ["事实正确性", "满足用户需求", "逻辑连贯性", "完备性"]
    assert f"[参考答案开始]\n{question['reference']}\n[参考答案结束]" in messages[0]["content"]
