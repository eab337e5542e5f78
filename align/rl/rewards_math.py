"""Mathematical equality of two answers (math-verify) in a worker process with a hard time limit.

math-verify parses LaTeX into sympy and compares; its own timeouts use `signal.alarm`, which works
on a process's main thread only and cannot interrupt sympy while it is inside C code (a huge integer
power, say). A training rank calls rewards from wherever TRL calls them, so the comparison runs in a
worker process of its own (`rewards_math_worker.py`, a plain script started with this interpreter),
on that process's main thread, where math-verify's alarms work; the rank waits at most
`hard_timeout_s` per answer and kills and restarts a worker that overruns. A killed comparison is a
0 with reason `timeout`, never a hung rank.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

WORKER = Path(__file__).with_name("rewards_math_worker.py")
# math-verify's own (soft) limits for parsing and for comparing one answer, in seconds.
SOFT_TIMEOUT_S = 3
# What the rank waits for one answer before it kills the worker: above parse + parse + verify.
HARD_TIMEOUT_S = 12.0
# The worker's start imports sympy and math-verify (1-2 s here, more on a loaded machine).
STARTUP_TIMEOUT_S = 60.0
WORKER_MEMORY_BYTES = 4 << 30


@dataclass(frozen=True)
class MathVerdict:
    correct: bool
    reason: str  # equal, not_equal, unparsable_answer, unparsable_reference, timeout, error: ...


class MathVerifier:
    """One worker process, started on first use, restarted after a hard timeout or a crash.

    Thread-safe (one comparison at a time); `close()` stops the worker, and so does the end of this
    process (the worker reads EOF on its stdin)."""

    def __init__(self, hard_timeout_s: float = HARD_TIMEOUT_S, soft_timeout_s: int = SOFT_TIMEOUT_S):
        self.hard_timeout_s = hard_timeout_s
        self.soft_timeout_s = soft_timeout_s
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._buffer = b""

    def _start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-u", str(WORKER), str(self.soft_timeout_s), str(WORKER_MEMORY_BYTES)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self._buffer = b""
        if self._read_line(STARTUP_TIMEOUT_S) is None:
            self._stop()
            raise RuntimeError(f"the math-verify worker did not start within {STARTUP_TIMEOUT_S:.0f} s")

    def _read_line(self, timeout_s: float) -> list | None:
        """The worker's next answer, or None when it takes longer than `timeout_s` or dies."""
        deadline = time.monotonic() + timeout_s
        fd = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process.stdin.close()
            self._process.stdout.close()
        self._process = None

    def close(self) -> None:
        with self._lock:
            self._stop()

    def check(self, prediction: str, reference: str) -> MathVerdict:
        """Whether `prediction` equals `reference` mathematically (both LaTeX without `$`)."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._stop()
                self._start()
            try:
                self._process.stdin.write((json.dumps([prediction, reference]) + "\n").encode())
                self._process.stdin.flush()
            except BrokenPipeError:
                self._stop()
                return MathVerdict(False, "error: worker died")
            reply = self._read_line(self.hard_timeout_s)
            if reply is None:
                reason = "timeout" if self._process.poll() is None else "error: worker died"
                self._stop()
                return MathVerdict(False, reason)
            return MathVerdict(*reply)
