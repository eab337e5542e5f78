"""Hostile programs in the code sandbox (real bubblewrap, real loopback listener, real host files).

Each program is scored through `score_code` as a completion would be: it earns only what it
honestly earned, finishes within its limits, leaves no process behind and the host unchanged."""

import os
import socket
import time
from pathlib import Path

import pytest

from align.rl.rewards_code import parse_tests, score_code
from align.rl.sandbox import SANDBOX_UID_BASE, Sandbox, SandboxLimits, check_sandbox

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/bin/bwrap"), reason="needs bubblewrap (scripts/install-system-deps.sh installs it)"
)

LIMITS = SandboxLimits(test_timeout_s=1.0, program_timeout_s=3.0, output_bytes=64 << 10)


@pytest.fixture(scope="module")
def sandbox():
    sandbox = Sandbox(LIMITS, workers=4)
    yield sandbox
    sandbox.close()


def sandbox_processes() -> list[str]:
    """Processes of the sandbox slots' uids (as root), or any bwrap left (otherwise)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            uid = entry.stat().st_uid
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if uid >= SANDBOX_UID_BASE or command.startswith("bwrap "):
            found.append(f"{entry.name} {command[:80]}")
    return found


def answer(code: str) -> str:
    return f"<think>plan</think>Here it is:\n```python\n{code}\n```"


def score(sandbox, code: str, tests) -> dict:
    return score_code([answer(code)], [parse_tests(tests, "test")], sandbox=sandbox)[0]


def test_the_sandbox_works_here(sandbox):
    check_sandbox(sandbox)


def test_a_sandbox_that_cannot_start_fails_the_check_with_its_reason():
    broken = Sandbox(LIMITS, workers=1, python="/opt/no-such-python/bin/python3")
    try:
        with pytest.raises(ValueError, match="the code sandbox does not work here: sandbox_error: exit status 1: "
                                             "bwrap: Can't find source path /opt/no-such-python"):
            check_sandbox(broken)
    finally:
        broken.close()


def test_no_network_even_to_a_loopback_server(sandbox):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('connected')"
    try:
        result = score(sandbox, code, [{"input": "", "output": "connected"}])
        # A connection that reached the listener would wait in its backlog, accepted or not.
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    assert result["reward"] == 0.0 and result["tests"] == ["error"]


def test_host_files_are_neither_read_nor_written(sandbox, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the host's secret\n")
    before = (secret.read_text(), secret.stat().st_mtime_ns)
    code = (
        f"try:\n    print(open({str(secret)!r}).read())\nexcept OSError as e:\n    print('unread', type(e).__name__)\n"
        f"try:\n    open({str(secret)!r}, 'w').write('overwritten')\nexcept OSError as e:\n    print('unwritten', type(e).__name__)\n"
        "open('/tmp/left-behind', 'w').write('x')\nprint(sorted(__import__('os').listdir('/')))"
    )
    result = score_code(
        [answer(code)], [parse_tests([{"input": "", "output": "the host's secret"}], "t")], sandbox=sandbox
    )[0]
    assert result["reward"] == 0.0
    assert (secret.read_text(), secret.stat().st_mtime_ns) == before
    assert not Path("/tmp/left-behind").exists()
    # What the program saw, through the sandbox itself: no secret, a root with only the bound paths.
    outcome = sandbox.run([(code, [{"kind": "stdio", "input": ""}])])[0].outcomes[0]
    assert "secret" not in outcome["stdout"]
    assert "unread FileNotFoundError" in outcome["stdout"] and "unwritten FileNotFoundError" in outcome["stdout"]
    assert "'home'" not in outcome["stdout"] and "'root'" not in outcome["stdout"] and "'work'" not in outcome["stdout"]


def test_resource_hogs_earn_nothing_and_leave_nothing(sandbox):
    hogs = {
        "memory": "x = bytearray(3 << 30)\nprint('ok')",
        "fork": (
            "import os, time\nn = 0\nfor _ in range(200):\n    try:\n        pid = os.fork()\n    except OSError:\n"
            "        break\n    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n    n += 1\nprint(n)"
        ),
        "loop": "while True:\n    pass",
        "flood": "print('ok')\nwhile True:\n    print('x' * 10000)",
        # answers, but leaves a process outside its group holding its stdout: it earned its pass
        "escape": "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nelse:\n    print('ok')",
    }
    expected = {"memory": "ok", "fork": "200", "loop": "ok", "flood": "ok", "escape": "ok"}
    start = time.monotonic()
    results = score_code(
        [answer(code) for code in hogs.values()],
        [parse_tests([{"input": "", "output": expected[name]}], name) for name in hogs],
        sandbox=sandbox,
    )
    elapsed = time.monotonic() - start
    statuses = dict(zip(hogs, (r["tests"][0] for r in results)))
    assert statuses == {"memory": "memory", "fork": "failed", "loop": "timeout", "flood": "output_limit",
                        "escape": "passed"}  # fmt: skip
    assert [r["reward"] for r in results] == [0.0, 0.0, 0.0, 0.0, 1.0]
    # 5 programs on 4 slots, each test limited to 1 s: well within two rounds of the program limit.
    assert elapsed < 2 * (LIMITS.program_timeout_s + 1)
    assert sandbox_processes() == []


def test_the_process_limit_counts_forks(sandbox):
    code = (
        "import os, time\nn = 0\nfor _ in range(200):\n    try:\n        pid = os.fork()\n    except OSError:\n"
        "        break\n    if pid == 0:\n        time.sleep(5)\n        os._exit(0)\n    n += 1\nprint(n)"
    )
    outcome = sandbox.run([(code, [{"kind": "stdio", "input": ""}])])[0].outcomes[0]
    if os.geteuid() == 0:  # the limit applies to the slot's own uid (see align.rl.sandbox)
        # the program's own process and its forks: max_processes in all
        assert int(outcome["stdout"]) + 1 == LIMITS.max_processes
    assert sandbox_processes() == []


def test_the_program_timeout_stops_the_remaining_tests():
    limits = SandboxLimits(test_timeout_s=1.0, program_timeout_s=1.5)
    sandbox = Sandbox(limits, workers=1)
    code = "import time\ntime.sleep(0.4)\nprint(input())"
    tests = [{"input": str(i), "output": str(i)} for i in range(6)]
    start = time.monotonic()
    try:
        result = score(sandbox, code, tests)
    finally:
        sandbox.close()
    assert time.monotonic() - start < limits.program_timeout_s + 2
    # 0.4 s a test against a 1.5 s program limit: at most 3 pass, the rest are cut or never reached.
    passed = result["tests"].count("passed")
    assert 1 <= passed <= 3
    assert result["tests"] == ["passed"] * passed + ["program_timeout"] * (6 - passed)
    assert result["reason"] == "program_timeout" and result["reward"] == passed / 6


def test_output_on_the_result_channel_cannot_fake_a_call_result(sandbox):
    # A call-based test's expected value never enters the sandbox: writing a guess to fd 3 does not help.
    code = "import os\nos.write(3, b'{\"status\": \"ran\", \"value\": 41}')\nos._exit(0)\ndef f():\n    return 0"
    result = score(sandbox, code, {"inputs": [[]], "outputs": [42], "fn_name": "f"})
    assert result["tests"] == ["failed"]


def test_a_sandbox_that_cannot_start_is_a_counted_zero():
    broken = Sandbox(LIMITS, workers=1, python="/usr/bin/no-such-python")
    try:
        result = score(broken, "print(1)", [{"input": "", "output": "1"}])
    finally:
        broken.close()
    assert result["reward"] == 0.0 and result["reason"].startswith("sandbox_error")
