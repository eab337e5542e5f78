"""Code rewards: the test formats of public code-RL sets, read as they come, and the pass fraction.

Accepted values of a row's tests (a JSON string of any of them is decoded first):

- `[{"input": "...", "output": "..."}, ...]`: stdin/stdout tests, the output compared after stripping
  (each line's trailing blanks and the whole text's leading and trailing blank lines). LiveCodeBench's
  `{"input", "output", "testtype": "functional"}` with a `fn_name` is a call-based test (one JSON value
  per input line as the arguments).
- `["assert f(1) == 2", ...]` or one string holding `assert` statements: assert-style tests, run after
  the program in its namespace.
- `{"inputs": [...], "outputs": [...]}` (TACO/APPS `input_output`, and the Klear team's CodeSub-15K
  `reward_model.ground_truth`, read by their `code_r1_compute.py`): stdin/stdout tests, or, with
  `"fn_name"`, call-based tests whose inputs are argument lists (APPS: the expected value may be
  wrapped in a one-element list).
- `{"functional": "..." or [...]}` (the same verifier's assert-style form).

Expected outputs never enter the sandbox for stdin/stdout and call-based tests: the sandbox reports
what the program printed or returned and the comparison happens here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from align.data.sources import DataError

from .completions import completion_text, final_answer, last_python_block

# The Klear team samples at most 16 tests per program (MAX_TEST_CASES in code_r1_compute.py); we take
# the first 16, so that a row's reward does not depend on a random draw.
MAX_TESTS_PER_PROGRAM = 16


@dataclass(frozen=True)
class TestCase:
    kind: str  # "stdio", "call" or "assert"
    input: object = None  # stdin text ("stdio") or the argument list ("call")
    expected: object = None  # stdout text ("stdio") or the return value ("call")
    fn_name: str | None = None
    code: str | None = None  # the assert statements ("assert")

    def for_sandbox(self) -> dict:
        """What the sandbox needs to run the test: never the expected stdout or return value."""
        if self.kind == "stdio":
            return {"kind": "stdio", "input": self.input}
        if self.kind == "call":
            return {"kind": "call", "fn_name": self.fn_name, "args": self.input}
        return {"kind": "assert", "code": self.code}


def _text(value, where: str, field: str) -> str:
    if isinstance(value, list):  # APPS stores some inputs and outputs as lists of lines
        if not all(isinstance(line, str) for line in value):
            raise DataError(f"{where}: {field} must be a string or a list of strings")
        return "\n".join(value)
    if not isinstance(value, str):
        raise DataError(f"{where}: {field} must be a string, not {type(value).__name__}")
    return value


def _assert_test(code, where: str) -> TestCase:
    if not isinstance(code, str) or not code.strip():
        raise DataError(f"{where}: an assert-style test must be non-empty Python source")
    try:
        compile(code, "<test>", "exec")
    except SyntaxError as error:
        raise DataError(f"{where}: an assert-style test does not compile: {error.msg} (line {error.lineno})") from None
    return TestCase("assert", code=code)


def _from_dict_list(tests: list, where: str, fn_name: str | None) -> list[TestCase]:
    parsed = []
    for j, test in enumerate(tests):
        at = f"{where}[{j}]"
        if isinstance(test, str):
            parsed.append(_assert_test(test, at))
            continue
        if not isinstance(test, dict) or "input" not in test or "output" not in test:
            raise DataError(f'{at}: a test must be {{"input": ..., "output": ...}} or an assert string')
        name = test.get("fn_name", fn_name)
        if test.get("testtype") == "functional":
            if not name:
                raise DataError(f"{at}: a functional test needs a fn_name")
            try:
                args = [json.loads(line) for line in _text(test["input"], at, "input").splitlines() if line.strip()]
                expected = json.loads(_text(test["output"], at, "output"))
            except json.JSONDecodeError as error:
                raise DataError(f"{at}: a functional test's input and output must be JSON: {error}") from None
            parsed.append(TestCase("call", input=args, expected=expected, fn_name=name))
        else:
            parsed.append(
                TestCase("stdio", input=_text(test["input"], at, "input"), expected=_text(test["output"], at, "output"))
            )
    return parsed


def parse_tests(value, where: str) -> list[TestCase]:
    """A row's tests in any accepted format (module docstring) as `TestCase`s; a DataError naming `where`
    (e.g. "train.jsonl line 3: field `tests`") for anything else."""
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            if "assert" in value:
                return [_assert_test(value, where)]
            raise DataError(f"{where}: neither JSON tests nor assert statements") from None
        if isinstance(decoded, str):
            return [_assert_test(decoded, where)]
        return parse_tests(decoded, where)
    if isinstance(value, list):
        if not value:
            raise DataError(f"{where}: no tests")
        return _from_dict_list(value, where, None)
    if isinstance(value, dict):
        if "inputs" in value or "outputs" in value:
            inputs, outputs, fn_name = value.get("inputs"), value.get("outputs"), value.get("fn_name")
            if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
                raise DataError(f"{where}: `inputs` and `outputs` must be lists of the same length")
            if not inputs:
                raise DataError(f"{where}: no tests")
            if fn_name:
                return [
                    TestCase("call", input=args if isinstance(args, list) else [args], expected=out, fn_name=fn_name)
                    for args, out in zip(inputs, outputs)
                ]
            return [
                TestCase("stdio", input=_text(i, f"{where}.inputs[{j}]", "input"),
                         expected=_text(o, f"{where}.outputs[{j}]", "output"))
                for j, (i, o) in enumerate(zip(inputs, outputs))
            ]
        if "functional" in value:
            functional = value["functional"]
            if isinstance(functional, list):
                return [_assert_test(code, f"{where}.functional[{j}]") for j, code in enumerate(functional)]
            return [_assert_test(functional, f"{where}.functional")]
        for nested in ("input_output", "ground_truth", "tests"):
            if nested in value:
                return parse_tests(value[nested], f"{where}.{nested}")
        if "pytest" in value:
            raise DataError(f"{where}: pytest-style tests are not supported (the sandbox has no pytest)")
        raise DataError(f"{where}: unknown test format with keys {sorted(value)[:6]}")
    raise DataError(f"{where}: tests must be a list, a dict or a JSON string, not {type(value).__name__}")


def check_tests_column(value, where: str) -> int:
    """Validate one row's tests at data-reading time; the number of tests, or a DataError naming `where`."""
    return len(parse_tests(value, where))


def tests_per_row(tests, input_output, reward_model, n: int) -> list[list[TestCase]]:
    """Each row's parsed tests, from whichever of the three columns the rows have."""
    for field, column in (("tests", tests), ("input_output", input_output), ("reward_model", reward_model)):
        if column is not None:
            break
    else:
        raise DataError("code reward: the rows have none of the columns `tests`, `input_output`, `reward_model`")
    cache: dict[str, list[TestCase]] = {}  # TRL repeats each row once per generation
    parsed = []
    for i, value in enumerate(column):
        key = value if isinstance(value, str) else None
        if key is not None and key in cache:
            parsed.append(cache[key])
            continue
        row_tests = parse_tests(value, f"row {i}: field `{field}`")
        if key is not None:
            cache[key] = row_tests
        parsed.append(row_tests)
    if len(parsed) != n:
        raise DataError(f"code reward: {n} completions but {len(parsed)} rows of `{field}`")
    return parsed


def _stdout_matches(actual: str, expected: str) -> bool:
    def normal(text: str) -> str:
        return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").strip().split("\n"))

    return normal(actual) == normal(expected)


def _value_matches(actual, expected) -> bool:
    expected = json.loads(json.dumps(expected))  # tuples as lists, as the sandbox's JSON has them
    return actual == expected or (isinstance(expected, list) and len(expected) == 1 and actual == expected[0])


def judge(test: TestCase, outcome: dict) -> str:
    """A test's status from the sandbox's outcome: passed, failed, or the sandbox's status (timeout,
    error, memory, output_limit, killed)."""
    if outcome.get("status") != "ran":
        return outcome.get("status", "error")
    if test.kind == "stdio":
        return "passed" if _stdout_matches(outcome.get("stdout", ""), test.expected) else "failed"
    if test.kind == "call":
        return "passed" if "value" in outcome and _value_matches(outcome["value"], test.expected) else "failed"
    return "passed" if outcome.get("ok") else "failed"


def score_code(completions, row_tests: list[list[TestCase]], sandbox=None) -> list[dict]:
    """Per completion: `{"reward", "reason", "tests"}`: the pass fraction, why (ok, no_final_answer,
    no_code, syntax_error, program_timeout, sandbox_error: ...) and each test's status."""
    from .sandbox import default_sandbox

    details: list[dict | None] = [None] * len(completions)
    programs, where = [], []
    for i, (completion, tests) in enumerate(zip(completions, row_tests, strict=True)):
        answer = final_answer(completion_text(completion))
        code = None if answer is None else last_python_block(answer)
        if code is None:
            reason = "no_final_answer" if answer is None else "no_code"
            details[i] = {"reward": 0.0, "reason": reason, "tests": []}
            continue
        tests = tests[:MAX_TESTS_PER_PROGRAM]
        programs.append((code, [t.for_sandbox() for t in tests]))
        where.append((i, tests))
    runs = (sandbox or default_sandbox()).run(programs) if programs else []
    for (i, tests), run in zip(where, runs, strict=True):
        statuses = [judge(test, outcome) for test, outcome in zip(tests, run.outcomes)]
        statuses += [run.reason] * (len(tests) - len(statuses))  # tests the sandbox never reached
        details[i] = {"reward": statuses.count("passed") / len(tests), "reason": run.reason, "tests": statuses}
    return details
