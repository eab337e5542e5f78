"""What a data directory's `serve` started, recorded in `DIR/processes.json`, so that `annotation
stop` can stop it even when `serve` itself was killed (`kill -9`, an OOM kill) and left Redis, the
database, the server and the worker running.

Each child runs in a process group of its own (its pid is the group's id) and the record keeps the
group's id, its leader's start time (from /proc, in clock ticks since boot) and the signal that
stops it cleanly. A recorded group is still ours when its leader is alive with the same start time,
or, the leader gone, for members started after it: the kernel never hands out a pid while a group
of that id lives, so a group that outlived its leader is the recorded one; a reused pid fails the
start-time check and is never signalled.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

PROCESSES_FILE = "processes.json"


@dataclass(frozen=True)
class RecordedProcess:
    name: str  # redis, postgres, server, worker
    pgid: int  # the group's id: its leader's pid
    start_time: int  # the leader's start time, /proc/PID/stat field 22
    stop_signal: int = signal.SIGTERM


def _stat(pid: int) -> Optional[tuple]:
    """(state, pgid, start time) of a process, or None when there is none by that pid."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 onwards
    return fields[0], int(fields[2]), int(fields[19])


def start_time(pid: int) -> Optional[int]:
    found = _stat(pid)
    return found and found[2]


def record_for(name: str, pid: int, stop_signal: int) -> RecordedProcess:
    """The record of a child just started with `start_new_session=True` (so its group's id is its pid)."""
    return RecordedProcess(name, pid, start_time(pid) or 0, int(stop_signal))


def write_records(data_dir: Path, records: list) -> None:
    path = Path(data_dir) / PROCESSES_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps([asdict(r) for r in records], indent=2) + "\n")
    os.replace(tmp, path)


def clear_records(data_dir: Path) -> None:
    (Path(data_dir) / PROCESSES_FILE).unlink(missing_ok=True)


def read_records(data_dir: Path) -> list:
    try:
        rows = json.loads((Path(data_dir) / PROCESSES_FILE).read_text())
        return [RecordedProcess(**row) for row in rows]
    except (OSError, ValueError, TypeError):
        return []  # no record (or a torn one): nothing that `stop` may signal


def live_members(process: RecordedProcess) -> list:
    """The pids still alive in the recorded group, [] when it is gone or its id now belongs to another."""
    leader = _stat(process.pgid)
    if leader is not None and leader[2] != process.start_time:
        return []  # the pid was reused: not ours
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found and found[0] != "Z" and found[1] == process.pgid and found[2] >= process.start_time:
                members.append(int(entry.name))
    return sorted(members)


def leftovers(data_dir: Path) -> list:
    """[(record, live pids)] of the recorded groups that still run, in the order they were started."""
    found = [(record, live_members(record)) for record in read_records(data_dir)]
    return [(record, pids) for record, pids in found if pids]


def describe(found: list) -> str:
    return ", ".join(f"{record.name} (pid {', '.join(map(str, pids))})" for record, pids in found)


def stop_leftovers(data_dir: Path, grace_s: float = 15) -> list:
    """Stop the recorded groups that still run, the last started first (the worker before the server,
    the server before its database and Redis), each with its clean-stop signal, then SIGKILL after
    `grace_s`; clears the record. Returns what it stopped, as `leftovers` does."""
    found = leftovers(data_dir)
    for record, _ in reversed(found):
        for signum, wait_s in ((record.stop_signal, grace_s), (signal.SIGKILL, 5)):
            if live_members(record):  # checked again right before each signal: never a reused pid
                _signal_group(record, signum)
            deadline = time.monotonic() + wait_s
            while live_members(record) and time.monotonic() < deadline:
                time.sleep(0.2)
    clear_records(data_dir)
    return found


def _signal_group(record: RecordedProcess, signum: int) -> None:
    try:
        os.killpg(record.pgid, signum)
    except ProcessLookupError:
        pass
