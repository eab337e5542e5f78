"""`serve --detach` and `annotation stop --data-dir DIR`: a server that outlives its terminal.

A running `serve` (foreground or detached) keeps its process id in `DIR/serve.pid`; `stop`
sends it SIGTERM, the same clean shutdown as Ctrl-C (worker, server, database, Redis, in that
order), and waits for it to finish. When `serve` was killed, `stop` stops what it left running, by
the records of `process_records.py` (`DIR/processes.json`), in the same order. `--detach` starts `serve` in a new session with its output in
`DIR/logs/serve.log`, waits until it answers (or fails, then shows why), and returns.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from annotation.errors import AnnotationError
from annotation.server.process_records import describe, stop_leftovers

PID_FILE = "serve.pid"
DETACHED_LOG = "serve.log"
READY_LINE = "Argilla is running at"
START_TIMEOUT_S = 600  # the first start may create argilla-server's venv
STOP_TIMEOUT_S = 90


def _is_serve(pid: int) -> bool:
    """True when `pid` is alive and is `python -m annotation serve` (not a reused pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"annotation" in argv and b"serve" in argv


def live_serve_pid(data_dir: Path) -> Optional[int]:
    """The pid of the `serve` running on this data directory, or None."""
    try:
        pid = int((Path(data_dir) / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid != os.getpid() and _is_serve(pid) else None


def claim_pid_file(data_dir: Path) -> None:
    (Path(data_dir) / PID_FILE).write_text(f"{os.getpid()}\n")


def release_pid_file(data_dir: Path) -> None:
    path = Path(data_dir) / PID_FILE
    try:
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def detach(serve_argv: list, data_dir: Path, log=print) -> None:
    """Start `python -m annotation serve ARGS` in the background; return once it answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    (data_dir / "logs").mkdir(exist_ok=True)
    log_path = data_dir / "logs" / DETACHED_LOG
    start_offset = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "annotation", "serve", *serve_argv],
            stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = _read_from(log_path, start_offset)
        if READY_LINE in text:
            log(text[text.index(READY_LINE):].rstrip().replace("Stop with Ctrl-C, or: ", "Stop with: "))
            log(f"(running in the background, pid {process.pid}; its output: {log_path})")
            return
        if process.poll() is not None:
            lines = [line for line in text.splitlines() if line.strip()]
            raise AnnotationError(f"serve stopped while starting (its output: {log_path}): {' / '.join(lines[-3:])}")
        time.sleep(0.5)
    raise AnnotationError(f"serve did not answer within {START_TIMEOUT_S}s; it still runs (pid {process.pid}), see {log_path}")


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", errors="replace")


def stop_serve(data_dir: Path) -> str:
    """Stop the `serve` running on this data directory (SIGTERM, then wait), and whatever its
    recorded children left running if it was killed (`process_records`); says what it did."""
    pid = live_serve_pid(data_dir)
    if pid is None:
        stale = Path(data_dir) / PID_FILE
        left = stop_leftovers(data_dir)
        if left:
            stale.unlink(missing_ok=True)
            return (f"the serve on {data_dir} was gone (killed?); stopped what it left running: "
                    f"{describe(left)}")
        if stale.exists():
            stale.unlink()
            return f"no Argilla was running on {data_dir} (removed a stale {PID_FILE})"
        if not Path(data_dir).exists():
            raise AnnotationError(f"{data_dir} does not exist: nothing to stop")
        return f"no Argilla is running on {data_dir}"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not _is_serve(pid):
            left = stop_leftovers(data_dir)  # none after a clean stop; a serve killed meanwhile leaves some
            extra = f"; then what it left running: {describe(left)}" if left else ""
            return f"stopped the Argilla on {data_dir} (pid {pid}){extra}"
        time.sleep(0.3)
    raise AnnotationError(f"the Argilla on {data_dir} (pid {pid}) did not stop within {STOP_TIMEOUT_S}s; see {data_dir}/logs")
