"""The reward functions (math, code, think_format) with TRL's calling convention, and their resolution.

Expected rewards are written by hand next to each case."""

import json
import sys
import time

import pytest

from align.data.sources import DataError
from align.rl.rewards import (
    code_reward,
    math_reward,
    resolve_reward_funcs,
    score_math,
    think_format,
)
from align.rl.completions import final_answer, last_boxed, last_python_block
from align.rl.rewards_code import check_tests_column
from align.rl.rewards_math import MathVerifier


def conversational(text):
    return [{"role": "assistant", "content": text}]


class Recorder:
    """TRL's `log_extra` / `log_metric` callbacks, keeping what the reward functions hand them."""

    def __init__(self):
        self.extra, self.metrics = {}, {}

    def log_extra(self, column, values):
        self.extra.setdefault(column, []).extend(values)

    def log_metric(self, name, value):
        self.metrics.setdefault(name, []).append(value)


# --- extraction ---------------------------------------------------------------------------------


def test_final_answer_is_after_the_last_think_end():
    assert final_answer("<think>a</think>b</think>c") == "c"
    assert final_answer("<think>only thinking \\boxed{1}") is None
    assert final_answer("no tags \\boxed{2}") == "no tags \\boxed{2}"


def test_last_boxed_balances_braces():
    assert last_boxed("\\boxed{1} then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{unclosed") is None
    assert last_boxed("none here") is None


def test_last_python_block():
    text = "```python\nprint(1)\n```\nand\n```py\nprint(2)\n```\n```\nplain\n```"
    assert last_python_block(text) == "print(2)\n"
    assert last_python_block("```c\nint x;\n```") is None


# --- think_format -------------------------------------------------------------------------------


def test_think_format_uses_the_team_penalties():
    completions = ["<think>x</think>y", "<think>x never closed", "x</think>y", "no tags"]
    assert think_format(completions) == [0.0, -0.5, -2.0, -0.5]
    assert think_format([conversational("<think>x</think>y")]) == [0.0]


# --- math ---------------------------------------------------------------------------------------


def test_math_reward_equal_forms_and_wrong_answers():
    recorder = Recorder()
    completions = [
        "<think>half</think>The answer is \\boxed{0.5}.",  # \frac{1}{2} == 0.5
        conversational("<think>factor</think>\\boxed{(x-1)(x+1)}"),  # x^2-1 == (x-1)(x+1)
        "<think>hm</think>\\boxed{3}",  # wrong
        "<think>hm</think>The answer is 7.",  # no boxed answer
        "<think>it is \\boxed{7}</think>I am not sure.",  # the boxed answer only inside <think>
        "<think>it is \\boxed{7} and I never stop thinking",  # unclosed think: no final answer
    ]
    answers = ["\\frac{1}{2}", "x^2-1", "4", "7", "7", "7"]
    rewards = math_reward(
        prompts=["p"] * 6, completions=completions, answer=answers,
        log_extra=recorder.log_extra, log_metric=recorder.log_metric,
    )
    assert rewards == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    details = [json.loads(d) for d in recorder.extra["math_detail"]]
    assert [d["reason"] for d in details] == [
        "equal", "equal", "not_equal", "no_boxed_answer", "no_boxed_answer", "no_final_answer",
    ]
    assert details[0]["extracted"] == "0.5"
    assert recorder.metrics["math/equal"] == [2 / 6]


def test_math_reward_reads_the_klear_reward_model_column():
    rows = [{"ground_truth": "\\frac{3}{4}", "style": "rule"}]
    assert math_reward(completions=["</think>\\boxed{0.75}"], reward_model=rows) == [1.0]
    # verl's ground_truth may list the acceptable answers (the team's math_dapo.py takes any of them)
    several = [{"ground_truth": ["x = 2", "2"], "style": "rule"}] * 3
    completions = ["</think>\\boxed{2}", "</think>\\boxed{x = 2}", "</think>\\boxed{3}"]
    assert math_reward(completions=completions, reward_model=several) == [1.0, 1.0, 0.0]


def test_a_pathological_expression_is_bounded_in_time():
    # math-verify's own alarm is set far beyond the hard limit, so the hard limit must kill the worker.
    verifier = MathVerifier(hard_timeout_s=1.0, soft_timeout_s=60)
    try:
        verifier.check("1", "1")  # start the worker (imports sympy) outside the timed part
        start = time.monotonic()
        details = score_math(["</think>\\boxed{7^{7^{10}}-7^{7^{10}}+1}"], ["2"], verifier=verifier)
        elapsed = time.monotonic() - start
        assert details[0] == {"reward": 0.0, "reason": "timeout", "extracted": "7^{7^{10}}-7^{7^{10}}+1"}
        assert elapsed < 10
        assert verifier.check("\\frac{1}{2}", "0.5").correct  # a fresh worker answers the next one
    finally:
        verifier.close()


def test_math_reward_without_an_answer_column_is_one_line():
    with pytest.raises(DataError, match="neither an `answer` nor a `reward_model`"):
        math_reward(completions=["x"])


# --- resolution ---------------------------------------------------------------------------------


def test_resolve_builtin_names_and_dotted_paths(tmp_path, monkeypatch):
    (tmp_path / "myrewards.py").write_text("def length(completions, **kwargs):\n    return [float(len(c)) for c in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    funcs = resolve_reward_funcs(["math", "code", "think_format", "myrewards.length"])
    assert funcs[:3] == [math_reward, code_reward, think_format]
    assert funcs[3](completions=["ab", "c"]) == [2.0, 1.0]
    sys.modules.pop("myrewards", None)


def test_resolve_refuses_unknown_and_non_callable_names(tmp_path, monkeypatch):
    (tmp_path / "notrewards.py").write_text("THRESHOLD = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"unknown reward 'accuracy'"):
        resolve_reward_funcs(["accuracy"])
    with pytest.raises(ValueError, match=r"cannot import 'no_such_pkg.rewards'"):
        resolve_reward_funcs(["no_such_pkg.rewards.f"])
    with pytest.raises(ValueError, match=r"has no 'missing'"):
        resolve_reward_funcs(["notrewards.missing"])
    with pytest.raises(ValueError, match=r"'notrewards.THRESHOLD' is a int, not a callable"):
        resolve_reward_funcs(["notrewards.THRESHOLD"])
    sys.modules.pop("notrewards", None)


# --- code ---------------------------------------------------------------------------------------

ADD = "a, b = map(int, input().split())\nprint(a + b)"
TWO_TESTS = [{"input": "1 2", "output": "3"}, {"input": "2 2", "output": "4\n"}]


def fenced(code):
    return f"<think>let me write it</think>\n```python\n{code}\n```"


def test_code_reward_correct_half_syntax_error_no_code():
    recorder = Recorder()
    completions = [
        fenced(ADD),  # both tests: 1.0
        conversational(fenced("a, b = map(int, input().split())\nprint(3)")),  # right on the first only: 0.5
        fenced("def broken(:\n    pass"),  # syntax error: 0.0
        "<think>hm</think>The sum is a + b.",  # no code: 0.0
        "<think>```python\nprint(3)\n```</think>",  # code only inside <think>: 0.0
    ]
    rewards = code_reward(
        prompts=["p"] * 5, completions=completions, tests=[TWO_TESTS] * 5,
        log_extra=recorder.log_extra, log_metric=recorder.log_metric,
    )
    assert rewards == [1.0, 0.5, 0.0, 0.0, 0.0]
    details = [json.loads(d) for d in recorder.extra["code_detail"]]
    assert [d["reason"] for d in details] == ["ok", "ok", "syntax_error", "no_code", "no_code"]
    assert details[1]["tests"] == ["passed", "failed"]
    assert details[2]["tests"] == ["syntax_error", "syntax_error"]
    assert recorder.metrics["code/ok"] == [2 / 5]


def test_code_reward_reads_taco_apps_and_klear_formats_as_they_come():
    # TACO/APPS `input_output`: stdin/stdout (lists of lines), and call-based with fn_name, where APPS
    # wraps some expected values in a one-element list.
    stdin_io = json.dumps({"inputs": [["1 2"], "5 5\n"], "outputs": [["3"], "10"]})
    call_io = json.dumps({"fn_name": "add", "inputs": [[1, 2], [2, 3]], "outputs": [[3], 6]})
    # The Klear team's CodeSub-15K: reward_model.ground_truth, a JSON string read by code_r1_compute.py.
    klear = {"ground_truth": json.dumps({"inputs": ["1 2\n", "7 1\n"], "outputs": ["3\n", "8\n"]}), "style": "rule"}
    functional = {"ground_truth": json.dumps({"functional": ["assert add(1, 2) == 3", "assert add(0, 0) == 1"]})}
    function = "def add(a, b):\n    return a + b"
    assert code_reward(completions=[fenced(ADD)], input_output=[stdin_io]) == [1.0]
    assert code_reward(completions=[fenced(function)], input_output=[call_io]) == [0.5]  # add(2, 3) is 5, not 6
    assert code_reward(completions=[fenced(ADD)], reward_model=[klear]) == [1.0]
    assert code_reward(completions=[fenced(function)], reward_model=[functional]) == [0.5]
    # LeetCode-style class with a typing annotation it never imported, and LiveCodeBench functional tests.
    leetcode = "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n" \
               "        seen = {}\n        for i, n in enumerate(nums):\n            if target - n in seen:\n" \
               "                return [seen[target - n], i]\n            seen[n] = i"
    lcb = [{"input": "[2, 7, 11, 15]\n9", "output": "[0, 1]", "testtype": "functional", "fn_name": "twoSum"}]
    assert code_reward(completions=[fenced(leetcode)], tests=[lcb]) == [1.0]


def test_check_tests_column_names_the_row_and_field():

    assert check_tests_column(TWO_TESTS, "train.jsonl line 1: field `tests`") == 2
    assert check_tests_column("assert f(1) == 2\nassert f(2) == 3", "x") == 1
    cases = [
        ("[]", "no tests"),
        ('{"inputs": [1, 2], "outputs": [1]}', "`inputs` and `outputs` must be lists of the same length"),
        ('[{"input": "1"}]', 'a test must be {"input": ..., "output": ...}'),
        ("print(1)", "neither JSON tests nor assert statements"),
        ("assert (", "does not compile"),
        ({"pytest": "def test_x(): pass"}, "pytest-style tests are not supported"),
        ({"foo": 1}, "unknown test format with keys ['foo']"),
        (7, "tests must be a list, a dict or a JSON string, not int"),
    ]
    for value, message in cases:
        with pytest.raises(DataError) as raised:
            check_tests_column(value, "train.jsonl line 3: field `tests`")
        assert str(raised.value).startswith("train.jsonl line 3: field `tests`")
        assert message in str(raised.value) and "\n" not in str(raised.value)
