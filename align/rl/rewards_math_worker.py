"""The math-verify worker (`align.rl.rewards_math`): a standalone script, so that starting it imports
math-verify and sympy only, never the `align` package (which imports transformers).

Reads one JSON `[prediction, reference]` per stdin line, answers one JSON `[correct, reason]` per line.
Runs on its own main thread, where math-verify's `signal.alarm` timeouts work.
"""

import json
import resource
import sys


def main(soft_timeout_s: int, memory_bytes: int) -> None:
    # A comparison that builds a huge number fails with MemoryError instead of swapping the host.
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    from math_verify import parse, verify

    def answer(correct: bool, reason: str) -> None:
        sys.stdout.write(json.dumps([correct, reason]) + "\n")
        sys.stdout.flush()

    answer(True, "ready")
    for line in sys.stdin:
        prediction, reference = json.loads(line)
        try:
            gold = parse(f"${reference}$", parsing_timeout=soft_timeout_s)
            if not gold:
                answer(False, "unparsable_reference")
                continue
            guess = parse(f"${prediction}$", parsing_timeout=soft_timeout_s)
            if not guess:
                answer(False, "unparsable_answer")
                continue
            equal = bool(verify(gold, guess, timeout_seconds=soft_timeout_s))
            answer(equal, "equal" if equal else "not_equal")
        except Exception as error:  # a crash in sympy on one answer scores that answer 0; the worker goes on
            answer(False, f"error: {type(error).__name__}")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
