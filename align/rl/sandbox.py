"""Untrusted Python programs in a bubblewrap sandbox: one sandbox per program, many programs at once.

Each program runs in its own `bwrap` (Debian's `bubblewrap`, installed by
`scripts/install-system-deps.sh`): new user, pid, network, ipc, uts and cgroup namespaces
(`--unshare-all`), so no network but a loopback of its own and no view of the host's processes; a
root filesystem of read-only binds of /usr and the /lib*, /bin links, a private /proc and /dev and a
size-capped tmpfs at /tmp, so no host file is visible; no capabilities, no further user namespaces
(`--disable-userns`); killed with its parent (`--die-with-parent`), in a session of its own
(`--new-session`: no terminal injection). The runner is the namespace's pid 1 (`--as-pid-1`): a
program cannot signal it, and when it exits the kernel kills whatever the program left. Inside, `sandbox_runner.py` runs the program's tests, each
in a forked child with rlimits (memory, processes, file size, open files, CPU), and reports each
test as one JSON line on its own stdout, which no program can write to.

As root (here, and in CI) each concurrent slot's bwrap starts (through `setpriv`) as a uid of its own
(`SANDBOX_UID_BASE + LOCAL_RANK * UIDS_PER_RANK + slot`): the process limit (RLIMIT_NPROC) then counts that sandbox's processes
only (the kernel never applies it to root), and one program's fork bomb cannot starve its
neighbours. Not as root, bwrap runs as the caller, and the process limit is left out (it would count
all of the caller's processes); the other limits hold.

A program that overruns its time is killed whole: the host kills the namespace's pid 1 (its host pid
comes from bwrap's `--info-fd`), the kernel kills every process of the pid namespace, and bwrap
reaps it and exits; `--die-with-parent` covers a host process that dies first.
Whatever happens, a program's result is a `ProgramRun`, never an exception: a sandbox that fails to
start is `reason="sandbox_error: ..."` (a 0 for that program, counted by the reward).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

RUNNER_SOURCE = Path(__file__).with_name("sandbox_runner.py").read_text()
# Debian's interpreter, under /usr (bound read-only); the programs get its standard library only.
SANDBOX_PYTHON = "/usr/bin/python3"
# First host uid of the concurrent slots (as root); far above any account a system creates.
SANDBOX_UID_BASE = 1_900_000_000
UIDS_PER_RANK = 4096
# The runner also counts against the slot uid's process limit (bwrap's own process is counted under
# the uid it started as, before it switched).
SANDBOX_OWN_PROCESSES = 1


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int = 1 << 30  # address space of each test's process (RLIMIT_AS); the team used 1 GiB
    max_processes: int = 32  # processes a program may have at once (RLIMIT_NPROC; firejail's 32 in the team's code)
    test_timeout_s: float = 6.0  # wall time of one test
    program_timeout_s: float = 60.0  # wall time of all of a program's tests
    output_bytes: int = 1 << 20  # stdout kept per test; more ends the test as output_limit
    file_bytes: int = 16 << 20  # the largest file a program may write (RLIMIT_FSIZE)
    tmpfs_bytes: int = 64 << 20  # the sandbox's /tmp
    open_files: int = 64  # RLIMIT_NOFILE


@dataclass
class ProgramRun:
    """One program's result: one outcome per test it reached, and why it stopped.

    An outcome is `{"status": "ran", "stdout": ..., "value"?: ..., "ok"?: true}` or a failure status:
    timeout, memory, output_limit, error (with `detail`), killed (with the signal's name). Reasons:
    ok, syntax_error, program_timeout, sandbox_error: <what>."""

    outcomes: list[dict] = field(default_factory=list)
    reason: str = "ok"
    detail: str = ""


def _root_binds() -> list[str]:
    """/usr read-only, and /lib, /lib64, /bin, /sbin as they are on the host: links into /usr, or binds."""
    args = ["--ro-bind", "/usr", "/usr"]
    for path in ("/lib", "/lib32", "/lib64", "/bin", "/sbin"):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


class Sandbox:
    """Runs programs' tests, `workers` programs at a time, each in a sandbox of its own."""

    def __init__(self, limits: SandboxLimits = SandboxLimits(), workers: int | None = None, python: str = SANDBOX_PYTHON):
        self.limits = limits
        self.workers = workers or len(os.sched_getaffinity(0))
        self.python = python
        self.bwrap = shutil.which("bwrap")
        self.as_root = os.geteuid() == 0
        self.setpriv = shutil.which("setpriv")
        # Ranks on one node get disjoint uids: their programs' process counts stay apart too.
        self.uid_offset = int(os.environ.get("LOCAL_RANK", "0")) * UIDS_PER_RANK
        self._slots: queue.Queue[int] = queue.Queue()
        for slot in range(self.workers):
            self._slots.put(slot)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox")

    def command(self, info_fd: int, uid: int | None = None) -> list[str]:
        """bwrap's command line; with `uid`, started through util-linux's `setpriv` as that uid and group,
        no supplementary groups. (Not Popen's `user=`/`group=`: with those, CPython 3.11 forks the
        whole host process instead of vfork-ing it, which in a trainer holding gigabytes costs tens of
        milliseconds per program: bench/sandbox_cost.py.)"""
        prefix = os.path.dirname(os.path.dirname(os.path.realpath(self.python)))
        binds = [] if prefix == "/usr" else ["--ro-bind", prefix, prefix]
        as_uid = [] if uid is None else [self.setpriv, "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "--"]
        return [
            *as_uid, self.bwrap, "--info-fd", str(info_fd), "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--as-pid-1",
            *_root_binds(), *binds,
            "--proc", "/proc", "--dev", "/dev", "--size", str(self.limits.tmpfs_bytes), "--tmpfs", "/tmp",
            "--chdir", "/tmp", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
            "--setenv", "LANG", "C.UTF-8",
            self.python, "-I", "-S", "-B", "-c", RUNNER_SOURCE,
        ]  # fmt: skip

    def run(self, programs: list[tuple[str, list[dict]]]) -> list[ProgramRun]:
        """`programs` as `(source, tests)` with tests as `TestCase.for_sandbox()` dicts; results in order."""
        return list(self._pool.map(lambda program: self._run_one(*program), programs))

    def _run_one(self, code: str, tests: list[dict]) -> ProgramRun:
        if self.bwrap is None:
            return ProgramRun(reason="sandbox_error: bubblewrap (bwrap) is not installed")
        if self.as_root and self.setpriv is None:
            return ProgramRun(reason="sandbox_error: setpriv (util-linux) is not installed")
        limits = asdict(self.limits)
        limits["process_limit"] = self.limits.max_processes + SANDBOX_OWN_PROCESSES if self.as_root else 0
        job = json.dumps({"code": code, "tests": tests, "limits": limits}).encode()
        slot = self._slots.get()
        try:
            uid = SANDBOX_UID_BASE + self.uid_offset + slot if self.as_root else None
            info_read, info_write = os.pipe()  # bwrap's --info-fd: the sandbox's init process's host pid
            try:
                process = subprocess.Popen(
                    self.command(info_write, uid), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    start_new_session=True, cwd="/", pass_fds=(info_write,),
                )  # fmt: skip
            except OSError as error:
                os.close(info_read)
                return ProgramRun(reason=f"sandbox_error: {type(error).__name__}: {error}")
            finally:
                os.close(info_write)
            # The runner stops itself at program_timeout_s; this bound is for a runner that cannot.
            host_timeout = self.limits.program_timeout_s + self.limits.test_timeout_s + 5
            timed_out = False
            try:
                stdout, stderr = process.communicate(job, timeout=host_timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_sandbox(process, info_read)
                stdout, stderr = process.communicate()
            finally:
                if process.poll() is None:
                    _kill_sandbox(process, info_read)
                process.wait()
                os.close(info_read)
        finally:
            self._slots.put(slot)
        return _parse_report(stdout, stderr, timed_out, process.returncode)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _kill_sandbox(process: subprocess.Popen, info_fd: int) -> None:
    """Kill the sandbox's init process: the kernel then kills every process of its pid namespace, and
    our bwrap, its parent, reaps it and exits. (Killing our bwrap first would orphan the init, and a
    container whose pid 1 does not reap would keep it as a zombie.) Only while our bwrap lives: the
    init's pid cannot have been reused then, since our bwrap has not reaped it."""
    os.set_blocking(info_fd, False)
    try:
        init_pid = json.loads(os.read(info_fd, 4096) or b"{}").get("child-pid")
    except (BlockingIOError, ValueError):
        init_pid = None
    if init_pid and process.poll() is None:
        try:
            os.kill(init_pid, signal.SIGKILL)
            process.wait(timeout=5)
            return
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:  # bwrap never got as far as starting the sandbox, or did not exit: its own process group
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _parse_report(stdout: bytes, stderr: bytes, timed_out: bool, returncode: int) -> ProgramRun:
    run = ProgramRun(reason="")
    for line in stdout.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short when the host killed the runner
            continue
        if "program" in record:
            run.reason, run.detail = record["program"], record.get("detail", "")
        else:
            run.outcomes.append(record)
    if not run.reason:
        if timed_out:
            run.reason = "program_timeout"
        else:
            last = stderr.decode("utf-8", "replace").strip().splitlines()
            run.reason = f"sandbox_error: exit status {returncode}" + (f": {last[-1][:200]}" if last else "")
    return run


_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process's shared sandbox pool (the code reward's), made on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Sandbox()
        return _default


def check_sandbox(sandbox: Sandbox | None = None) -> None:
    """Run one trivial program; a ValueError with the reason when the sandbox does not work here (call it
    at the start of a run that uses the code reward, rather than scoring every program 0)."""
    run = (sandbox or default_sandbox()).run([("print(6 * 7)", [{"kind": "stdio", "input": ""}])])[0]
    if run.reason != "ok" or not run.outcomes or run.outcomes[0].get("stdout", "").strip() != "42":
        raise ValueError(f"the code sandbox does not work here: {run.reason} {run.detail} {run.outcomes}".strip())
