"""The runner inside the sandbox (`align.rl.sandbox`): runs one program's tests and reports each.

Started by bubblewrap as `python3 -I -S -B -c <this source>`, so it is plain standard-library code
that imports nothing of ours. It reads the job (program, tests, limits) as JSON on stdin, compiles
the program once, and runs each test in a forked child of its own with the resource limits set:

- the child's stdin is the test's input (a memory file, memfd), its stdout/stderr are pipes
  that the runner reads up to the output cap, and its result (a call's return value, or that the
  asserts passed) comes on fd 3; every other descriptor is closed before the program runs;
- the child is the leader of a process group, killed whole (SIGKILL) when the test ends, passes
  its time limit or floods its output;
- the runner makes itself non-dumpable, so a program (same uid) can neither ptrace it nor open
  /proc/<runner>/fd: its stdout, where it writes one JSON line per test, is out of the program's reach.

Expected outputs are not in the job: the host compares stdout and return values itself.
"""

import builtins
import json
import os
import resource
import select
import signal
import sys
import time

# How long the pipes of a test whose process has exited may stay open (held by a process it started).
EXIT_GRACE_S = 0.2

# What LeetCode-style solutions and their tests use without importing it: the standard-library names the
# Klear team's verifier (code_r1_compute.py, BASE_IMPORTS) puts before call-based and assert-style tests,
# without its numpy/pandas (not in the sandbox's interpreter), and LeetCode's list and tree helpers.
# Stdin/stdout programs get none of it, as there.
CALL_PRELUDE = """
import bisect, collections, copy, datetime, functools, heapq, io, itertools, math, operator, os, random, re, string, sys
from bisect import bisect, bisect_left, bisect_right, insort
from collections import Counter, OrderedDict, defaultdict, deque
from copy import deepcopy
from functools import cache, cmp_to_key, lru_cache, partial, reduce
from heapq import heapify, heappop, heappush, heapreplace, merge, nlargest, nsmallest
from itertools import (accumulate, chain, combinations, count, cycle, groupby, islice, pairwise, permutations, product,
                       repeat, zip_longest)
from math import atan2, ceil, comb, factorial, floor, gcd, inf, isqrt, log, log2, log10, pi, prod, sqrt
from operator import iand, itemgetter, or_, sub, xor
from os.path import commonprefix
from random import randrange, shuffle
from re import search as re_search
from string import ascii_lowercase, ascii_uppercase
from time import time
from typing import *


class ListNode:
    def __init__(self, val=0, next=None):
        self.val, self.next = val, next


class TreeNode:
    def __init__(self, val=0, left=None, right=None):
        self.val, self.left, self.right = val, left, right


def list_node(values):
    head = None
    for value in reversed(values):
        head = ListNode(value, head)
    return head


def tree_node(values):
    # LeetCode's level order: children of the nodes present, None for an empty place.
    if not values or values[0] is None:
        return None
    root = TreeNode(values[0])
    parents, index = deque([root]), 1
    while parents and index < len(values):
        parent = parents.popleft()
        for side in ("left", "right"):
            if index < len(values) and values[index] is not None:
                child = TreeNode(values[index])
                setattr(parent, side, child)
                parents.append(child)
            index += 1
    return root


def is_same_list(a, b):
    while a is not None and b is not None:
        if a.val != b.val:
            return False
        a, b = a.next, b.next
    return a is None and b is None


def is_same_tree(a, b):
    if a is None or b is None:
        return a is b
    return a.val == b.val and is_same_tree(a.left, b.left) and is_same_tree(a.right, b.right)
"""


def _limit(which, value):
    resource.setrlimit(which, (value, value))


def _child(compiled, test, limits, prelude):
    """In the forked child: run the program (and the call or the asserts), report on fd 3, exit."""
    _limit(resource.RLIMIT_AS, limits["memory_bytes"])
    if limits.get("process_limit"):
        _limit(resource.RLIMIT_NPROC, limits["process_limit"])
    _limit(resource.RLIMIT_FSIZE, limits["file_bytes"])
    _limit(resource.RLIMIT_NOFILE, limits["open_files"])
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_CPU, int(limits["test_timeout_s"]) + 1)
    sys.stdin = open(0, "r", encoding="utf-8", errors="replace", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)
    result = open(3, "w", encoding="utf-8", closefd=False)

    def report(**fields):
        try:
            sys.stdout.flush()
        except Exception:
            pass
        result.write(json.dumps(fields, default=repr))
        result.flush()
        os._exit(0)

    namespace = {"__name__": "__main__", "__builtins__": builtins}
    if test["kind"] != "stdio":
        namespace.update(prelude)
    try:
        try:
            exec(compiled, namespace)
        except SystemExit as exit_:
            if exit_.code not in (None, 0):
                report(status="error", detail=f"exit status {exit_.code}")
        if test["kind"] == "call":
            function = namespace.get(test["fn_name"])
            if function is None and isinstance(namespace.get("Solution"), type):
                function = getattr(namespace["Solution"](), test["fn_name"], None)
            if not callable(function):
                report(status="error", detail=f"no function {test['fn_name']!r}")
            value = function(*test["args"])
            report(status="ran", value=json.loads(json.dumps(value, default=repr)))
        if test["kind"] == "assert":
            exec(compile(test["code"], "<test>", "exec"), namespace)
            report(status="ran", ok=True)
        report(status="ran")
    except MemoryError:
        report(status="memory", detail="MemoryError")
    except BaseException as error:  # the program's own failure: the test fails, the runner goes on
        report(status="error", detail=f"{type(error).__name__}: {str(error)[:200]}")


def _run_test(compiled, test, index, timeout_s, limits, prelude):
    # The input in a memory file, not a named one: nothing of the test's is on the program's /tmp, and a
    # runner started without the sandbox (bench/sandbox_cost.py's baseline) shares no path with another.
    stdin_fd = os.memfd_create(f"stdin-{index}")
    with open(stdin_fd, "w", encoding="utf-8", closefd=False) as handle:
        handle.write(test.get("input", "") if test["kind"] == "stdio" else "")
    os.lseek(stdin_fd, 0, os.SEEK_SET)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
            for source, target in ((stdin_fd, 0), (out_w, 1), (err_w, 2), (res_w, 3)):
                os.dup2(source, target)
            os.closerange(4, 65536)
            _child(compiled, test, limits, prelude)
        finally:
            os._exit(70)
    for fd in (stdin_fd, out_w, err_w, res_w):
        os.close(fd)
    try:
        os.setpgid(pid, pid)  # also here: the race with the child's own setpgid decides nothing then
    except OSError:
        pass
    exited = os.pidfd_open(pid)
    buffers = {out_r: bytearray(), err_r: bytearray(), res_r: bytearray()}
    caps = {out_r: limits["output_bytes"], err_r: 4096, res_r: limits["output_bytes"]}
    status = None
    deadline = time.monotonic() + timeout_s
    open_fds = set(buffers)
    child_done = False
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            status = None if child_done else "timeout"
            break
        ready, _, _ = select.select(list(open_fds) + ([] if child_done else [exited]), [], [], left)
        if exited in ready:
            child_done = True
            # Whatever the program left behind in its group goes now; its pipes then reach EOF, unless
            # a process that left the group holds them: that one gets a short grace, not the full limit.
            _kill_group(pid)
            deadline = min(deadline, time.monotonic() + EXIT_GRACE_S)
        for fd in ready:
            if fd == exited:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.discard(fd)
                continue
            buffers[fd] += chunk
            if len(buffers[fd]) > caps[fd]:
                if fd == out_r or fd == res_r:
                    status = "output_limit"
                del buffers[fd][caps[fd] :]
        if status == "output_limit":
            break
    _kill_group(pid)
    _, wait_status = os.waitpid(pid, 0)
    for fd in list(buffers) + [exited]:
        os.close(fd)
    if status is not None:
        return {"status": status}
    if os.WIFSIGNALED(wait_status):
        signal_number = os.WTERMSIG(wait_status)
        if signal_number == signal.SIGXCPU:
            return {"status": "timeout"}
        return {"status": "killed", "detail": signal.Signals(signal_number).name}
    try:
        result = json.loads(bytes(buffers[res_r]).decode("utf-8"))
        if not isinstance(result, dict):
            raise ValueError
    except ValueError:
        stderr = bytes(buffers[err_r]).decode("utf-8", "replace").strip().splitlines()
        return {"status": "error", "detail": stderr[-1][:200] if stderr else "no result"}
    result["stdout"] = bytes(buffers[out_r]).decode("utf-8", "replace")
    return result


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def main():
    job = json.loads(sys.stdin.buffer.read())
    try:  # PR_SET_DUMPABLE = 4: no ptrace, no /proc/<pid>/fd for the programs (same uid)
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
    except Exception:
        pass
    out = sys.stdout
    limits = job["limits"]
    try:
        compiled = compile(job["code"], "<program>", "exec")
    except (SyntaxError, ValueError) as error:
        out.write(json.dumps({"program": "syntax_error", "detail": str(error)[:200]}) + "\n")
        return
    prelude = {}
    if any(test["kind"] != "stdio" for test in job["tests"]):  # imported once here; each test's fork inherits it
        exec(CALL_PRELUDE, prelude)
        del prelude["__builtins__"]
    deadline = time.monotonic() + limits["program_timeout_s"]
    for index, test in enumerate(job["tests"]):
        left = deadline - time.monotonic()
        if left <= 0:
            out.write(json.dumps({"program": "program_timeout"}) + "\n")
            return
        outcome = _run_test(compiled, test, index, min(limits["test_timeout_s"], left), limits, prelude)
        if outcome["status"] == "timeout" and left < limits["test_timeout_s"]:  # cut short by the program limit
            out.write(json.dumps({"program": "program_timeout"}) + "\n")
            return
        out.write(json.dumps(outcome) + "\n")
        out.flush()
    out.write(json.dumps({"program": "ok"}) + "\n")


main()
