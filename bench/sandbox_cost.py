"""Benchmark: the code reward's sandbox (`align.rl.sandbox`, one bubblewrap per program) against plain,
unsandboxed subprocesses of the same programs and tests, at the same concurrency.

    PYTHONPATH=$PWD .venv/bin/python bench/sandbox_cost.py [--rounds 5] [--copies 2] [--workers N]

Variants (each scores the same completions with `align.rl.rewards_code.score_code`, `workers` programs at a
time, a program's tests in order, as `code_reward` runs them; `workers` defaults to the CPUs, the reward's own
default):

- `sandbox`: `Sandbox()` as the code reward uses it (bwrap, namespaces, per-slot uid, the runner inside).
- `runner_plain` (the baseline, the strongest fair one): the same runner (`sandbox_runner.py`: the program
  compiled once, each test in a forked child with the same rlimits) started as a plain subprocess of the
  same interpreter, without bubblewrap. The only difference from `sandbox` is the sandbox itself.
- `subprocess_per_test`: what a plain verifier does, one `python3` process per test (the program with the
  call or the asserts appended), no limits but the timeout: how much one process per program saves.

Workloads, both in every round of every variant:

- the mix: 5 problems × 8 sampled answers × `--copies`: stdin/stdout problems with 16, 12 and 8 tests
  (one with some arithmetic per test), a call-based TACO/APPS `fn_name` problem with 10, an assert-style
  one with 6; per problem 5 correct answers, 1 wrong, 1 that raises on some inputs, 1 syntax error (no
  timeouts: a timed-out test costs its limit whatever runs it). Metric: tests per second.
- startup: 24 trivial programs of one test each (`print(input())`): milliseconds per program, the fixed
  cost of starting a program's process (and its sandbox).

Every variant's rewards must equal the sandbox's (checked each round, else the script stops): the same
work was done. Rounds are interleaved by bench/harness.py (order rotated each round), in one process (the
pool lives across calls, as the reward's `default_sandbox()` does). Prints the harness's table and a JSON
line.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import harness  # bench/ is on the path when a bench script runs

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from align.rl.rewards_code import parse_tests, score_code  # noqa: E402
from align.rl.sandbox import RUNNER_SOURCE, SANDBOX_PYTHON, ProgramRun, Sandbox  # noqa: E402


class PlainRunner(Sandbox):
    """The sandbox's runner and pool without bubblewrap: `python3 -I -S -B -c <runner>` as the caller."""

    def __init__(self, workers):
        super().__init__(workers=workers)
        self.bwrap = "(not used)"
        self.as_root = False  # no per-slot uid, no process limit: a plain subprocess

    def command(self, info_fd: int, uid: int | None = None) -> list[str]:
        return [self.python, "-I", "-S", "-B", "-c", RUNNER_SOURCE]


class SubprocessPerTest:
    """One plain `python3` per test, `workers` programs at a time; outcomes in the sandbox's format."""

    def __init__(self, workers, test_timeout_s=6.0):
        self.test_timeout_s = test_timeout_s
        self._pool = ThreadPoolExecutor(workers)

    def run(self, programs):
        return list(self._pool.map(lambda program: self._run_one(*program), programs))

    def _run_one(self, code, tests) -> ProgramRun:
        try:
            compile(code, "<program>", "exec")
        except SyntaxError as error:
            return ProgramRun(reason="syntax_error", detail=str(error))
        return ProgramRun(outcomes=[self._run_test(code, test) for test in tests])

    def _run_test(self, code, test) -> dict:
        source, stdin = code, test.get("input", "")
        if test["kind"] == "call":
            stdin = ""
            source = (f"from typing import *\n{code}\nimport json as _json\n_f = globals().get({test['fn_name']!r})\n"
                      f"if _f is None:\n    _f = getattr(Solution(), {test['fn_name']!r})\n"
                      f"print('\\nRESULT ' + _json.dumps(_f(*{test['args']!r}), default=repr))")
        elif test["kind"] == "assert":
            stdin, source = "", f"from typing import *\n{code}\n{test['code']}"
        try:
            done = subprocess.run([SANDBOX_PYTHON, "-I", "-S", "-B", "-c", source], input=stdin, capture_output=True,
                                  text=True, timeout=self.test_timeout_s)
        except subprocess.TimeoutExpired:
            return {"status": "timeout"}
        if done.returncode:
            return {"status": "error", "detail": (done.stderr.strip().splitlines() or ["no result"])[-1][:200]}
        if test["kind"] == "call":
            return {"status": "ran", "value": json.loads(done.stdout.rsplit("\nRESULT ", 1)[1])}
        if test["kind"] == "assert":
            return {"status": "ran", "ok": True}
        return {"status": "ran", "stdout": done.stdout}

    def close(self):
        self._pool.shutdown()


# --- the workload --------------------------------------------------------------------------------

SUM = ("n = int(input())\nprint(sum(map(int, input().split())))", "n = int(input())\nprint(sum(map(int, input().split())) + 1)",
       "n = int(input())\nxs = list(map(int, input().split()))\nprint(sum(xs) if n < 9 else xs[n])")
WORDS = ("print(' '.join(sorted(input().split())))", "print(' '.join(sorted(input().split(), reverse=True)))",
         "w = input().split()\nprint(' '.join(sorted(w)) if len(w) < 5 else w[99])")
PRIMES = ("n = int(input())\nsieve = bytearray([1]) * n\nsieve[:2] = b'\\0\\0'\n"
          "for i in range(2, int(n ** 0.5) + 1):\n    if sieve[i]:\n        sieve[i*i::i] = bytearray(len(sieve[i*i::i]))\n"
          "print(sum(sieve))",
          "n = int(input())\nprint(sum(all(k % d for d in range(2, int(k ** 0.5) + 1)) for k in range(2, n + 1)))",
          "n = int(input())\nprint(1 // (n % 2))")
FIB = ("def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
       "def fib(n):\n    a, b = 1, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
       "def fib(n):\n    return [0, 1, 1, 2, 3][n]")
PALINDROME = ("def is_palindrome(s: str) -> bool:\n    t = [c.lower() for c in s if c.isalnum()]\n    return t == t[::-1]",
              "def is_palindrome(s: str) -> bool:\n    return s == s[::-1]",
              "def is_palindrome(s: str) -> bool:\n    return s[0] == s[-1] and is_palindrome(s[1:-1])")


def _count_primes(n):
    return sum(all(k % d for d in range(2, int(k ** 0.5) + 1)) for k in range(2, n))


def problems() -> list[tuple[object, tuple[str, str, str]]]:
    """(tests in a public format, (correct, wrong, raises on some inputs)) for the five problems."""
    sums = [{"input": f"{n}\n{' '.join(str(3 * k - n) for k in range(n))}", "output": str(sum(3 * k - n for k in range(n)))}
            for n in range(1, 17)]
    words = [" ".join(f"w{(7 * k * i) % 13}" for k in range(i)) for i in range(1, 13)]
    sort_tests = [{"input": w, "output": " ".join(sorted(w.split()))} for w in words]
    prime_tests = [{"input": str(n), "output": str(_count_primes(n))} for n in (10, 97, 500, 1000, 1500, 2000, 2500, 3000)]
    fibs = [0, 1]
    while len(fibs) < 30:
        fibs.append(fibs[-1] + fibs[-2])
    fib_tests = json.dumps({"fn_name": "fib", "inputs": [[n] for n in range(0, 30, 3)], "outputs": [fibs[n] for n in range(0, 30, 3)]})
    palindromes = ["assert is_palindrome('A man, a plan, a canal: Panama')", "assert not is_palindrome('race a car')",
                   "assert is_palindrome('')", "assert is_palindrome('x')", "assert is_palindrome('No lemon, no melon')",
                   "assert not is_palindrome('ab')"]
    return [(sums, SUM), (sort_tests, WORDS), (prime_tests, PRIMES), (fib_tests, FIB), (palindromes, PALINDROME)]


def fenced(code: str) -> str:
    return f"<think>Let me write it.</think>Here is my solution:\n```python\n{code}\n```"


def mix(copies: int):
    """Completions and parsed tests: per problem 5 correct, 1 wrong, 1 raising, 1 syntax error, × copies."""
    completions, row_tests = [], []
    for _ in range(copies):
        for tests, (correct, wrong, raising) in problems():
            parsed = parse_tests(tests, "bench")
            for code in [correct] * 5 + [wrong, raising, correct + "\nprint(("]:
                completions.append(fenced(code))
                row_tests.append(parsed)
    return completions, row_tests


def measure(runner, completions, row_tests, trivial) -> tuple[dict, list[float]]:
    tests = sum(len(t) for t in row_tests)
    started = time.perf_counter()
    rewards = [d["reward"] for d in score_code(completions, row_tests, sandbox=runner)]
    mix_s = time.perf_counter() - started
    started = time.perf_counter()
    trivial_rewards = [d["reward"] for d in score_code(*trivial, sandbox=runner)]
    startup_s = time.perf_counter() - started
    if trivial_rewards != [1.0] * len(trivial_rewards):
        sys.exit(f"{type(runner).__name__}: trivial programs failed: {trivial_rewards}")
    return {"tests_per_s": tests / mix_s, "ms_per_trivial_program": 1000 * startup_s / len(trivial_rewards),
            "mix_s": mix_s, "tests": tests, "programs": len(completions)}, rewards


def hold_memory(mib: int) -> bytearray:
    """`mib` MiB, every page written: a trainer's resident memory, which starting a process may have to copy."""
    ballast = bytearray(mib << 20)
    ballast[::4096] = b"\1" * len(range(0, mib << 20, 4096))
    return ballast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_arguments(parser, rounds=5, warmup_rounds=1)
    parser.add_argument("--copies", type=int, default=2, help="copies of the 5-problem × 8-answer mix per round")
    parser.add_argument("--workers", type=int, default=None, help="programs at a time (default: the CPUs)")
    parser.add_argument("--parent-mib", type=int, default=2048,
                        help="memory this process holds, touched: the reward runs inside the trainer (0: none)")
    args = parser.parse_args()
    parent = hold_memory(args.parent_mib)  # noqa: F841  (held until the end)

    completions, row_tests = mix(args.copies)
    trivial = ([fenced("print(input())")] * 24, [parse_tests([{"input": "hi", "output": "hi"}], "bench")] * 24)
    runners = {"runner_plain": PlainRunner(args.workers), "sandbox": Sandbox(workers=args.workers),
               "subprocess_per_test": SubprocessPerTest(args.workers or len(os.sched_getaffinity(0)))}
    reference = {}

    def variant(name):
        def one_round():
            measurement, rewards = measure(runners[name], completions, row_tests, trivial)
            reference.setdefault("rewards", rewards)
            if rewards != reference["rewards"]:
                sys.exit(f"{name}'s rewards differ from the first variant's: {rewards} vs {reference['rewards']}")
            return measurement
        return one_round

    try:
        comparison = harness.compare({name: variant(name) for name in runners}, baseline="runner_plain",
                                     rounds=args.rounds, warmup_rounds=args.warmup_rounds,
                                     metrics={"tests_per_s": "higher", "ms_per_trivial_program": "lower"})
    finally:
        for runner in runners.values():
            runner.close()
    rewards = reference["rewards"]
    print(f"workers {runners['sandbox'].workers}; mix: {len(completions)} programs, {sum(len(t) for t in row_tests)} tests, "
          f"mean reward {sum(rewards) / len(rewards):.3f}")
    print(comparison.table())
    print(json.dumps(comparison.as_dict()))


if __name__ == "__main__":
    main()
