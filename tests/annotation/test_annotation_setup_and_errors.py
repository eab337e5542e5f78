"""serve's safety rules, where client commands find the server, and the messages when they cannot."""

from __future__ import annotations

import dataclasses
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from align.common.ports import free_loopback_port
from annotation.connection import Credentials, check_server, resolve_server, write_private_json
from annotation.errors import AnnotationError
from annotation.server.install import MARKER, is_installed
from annotation.server.lifecycle import ServeConfig, ServeError, check_bind_address, local_api_url, server_environment


def test_only_loopback_unless_asked():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        check_bind_address(host, allow_remote=False)
    for host in ("0.0.0.0", "192.168.1.5", "::"):
        with pytest.raises(ServeError, match="--allow-remote"):
            check_bind_address(host, allow_remote=False)
        check_bind_address(host, allow_remote=True)
    with pytest.raises(ServeError, match="not an IP address"):
        check_bind_address("example.org", allow_remote=False)


@pytest.mark.parametrize("port", ["70000", "0", "-1"])
def test_serve_refuses_a_port_out_of_range_in_one_line_detached_or_not(tmp_path, capsys, port):
    """Was the socket's OverflowError traceback (70000, -1); 0 would leave credentials.json no address."""
    from annotation.__main__ import main

    for detach in ([], ["--detach"]):
        assert main(["serve", "--port", port, "--data-dir", str(tmp_path / "argilla"), *detach]) == 2
        assert capsys.readouterr().err == f"error: --port must be between 1 and 65535, not {port}\n"
    assert not (tmp_path / "argilla").exists()


def test_local_api_url():
    assert local_api_url("127.0.0.1", 6900) == "http://127.0.0.1:6900"
    assert local_api_url("0.0.0.0", 6900) == "http://127.0.0.1:6900"
    assert local_api_url("::1", 7000) == "http://[::1]:7000"


def test_server_environment(tmp_path):
    base = {"PATH": "/bin", "ARGILLA_API_KEY": "client-side", "PYTHONPATH": "/elsewhere", "VIRTUAL_ENV": "/v"}
    env = server_environment(ServeConfig(data_dir=tmp_path), "redis://127.0.0.1:1/0", Path("/code"), base)
    assert env["ARGILLA_SEARCH_ENGINE"] == "embedded"
    assert env["ARGILLA_DATABASE_URL"] == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'argilla.db'}"
    assert env["ARGILLA_REDIS_URL"] == "redis://127.0.0.1:1/0" and env["PYTHONPATH"] == "/code"
    assert env["HF_HUB_OFFLINE"] == "1" and env["PATH"] == "/bin"
    assert "ARGILLA_API_KEY" not in env and "VIRTUAL_ENV" not in env
    es = server_environment(ServeConfig(data_dir=tmp_path, elasticsearch="http://es:9200"), "redis://x", Path("/c"), {})
    assert (es["ARGILLA_SEARCH_ENGINE"], es["ARGILLA_ELASTICSEARCH"]) == ("elasticsearch", "http://es:9200")


def test_private_json_is_owner_only(tmp_path):
    path = tmp_path / "credentials.json"
    path.write_text("{}")
    path.chmod(0o644)
    write_private_json(path, {"api_key": "k"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and json.loads(path.read_text()) == {"api_key": "k"}


def test_where_the_server_comes_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .data/argilla here
    with pytest.raises(AnnotationError, match="no Argilla server given"):
        resolve_server(None, {})
    with pytest.raises(AnnotationError, match="set both"):
        resolve_server(None, {"ARGILLA_API_URL": "http://x"})
    env = resolve_server(None, {"ARGILLA_API_URL": "http://x:1/", "ARGILLA_API_KEY": "k"})
    assert (env.api_url, env.api_key) == ("http://x:1", "k")
    with pytest.raises(AnnotationError, match="does not exist: start the server"):
        resolve_server(tmp_path / "nowhere", {})
    data = tmp_path / "data"
    data.mkdir()
    (data / "credentials.json").write_text(json.dumps({"api_url": "http://y:2", "username": "owner"}))
    with pytest.raises(AnnotationError, match="missing field"):
        resolve_server(data, {})
    write_private_json(data / "credentials.json", Credentials("http://y:2", "owner", "pw", "key").as_dict())
    from_dir = resolve_server(data, {"ARGILLA_API_URL": "http://x:1", "ARGILLA_API_KEY": "k"})
    assert (from_dir.api_url, from_dir.api_key, from_dir.workspace) == ("http://y:2", "key", "annotation")


def test_an_unreachable_server_is_named(tmp_path):
    url = f"http://127.0.0.1:{free_loopback_port()}"  # nothing listens there
    env = resolve_server(None, {"ARGILLA_API_URL": url, "ARGILLA_API_KEY": "k"})
    with pytest.raises(AnnotationError, match=f"cannot reach Argilla at {url}"):
        check_server(env)


def test_server_venv_counts_as_installed_only_with_the_current_pins(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").write_text("")
    assert not is_installed(tmp_path)
    (tmp_path / MARKER).write_text("an older set of pins\n")
    assert not is_installed(tmp_path)


def run_cli(*args, env=None, cwd=None):
    full_env = {"PATH": "/usr/bin:/bin", **(env or {})}
    return subprocess.run([sys.executable, "-m", "annotation", *args], capture_output=True, text=True, env=full_env, cwd=cwd)


def test_cli_bad_input_fails_before_talking_to_any_server(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "only one", "completions": [{"model": "m", "content": "x"}]}) + "\n")
    # the server address is unreachable on purpose: the input is checked first
    env = {"ARGILLA_API_URL": f"http://127.0.0.1:{free_loopback_port()}", "ARGILLA_API_KEY": "k"}
    result = run_cli("push", str(bad), "--dataset", "d", env=env)
    assert result.returncode == 2
    assert f"error: 1 bad input row(s):\n  {bad}:1: field 'completions' has 1 answer" in result.stderr
    assert "Traceback" not in result.stderr
    missing = run_cli("push", str(tmp_path / "absent.jsonl"), "--dataset", "d", env=env)
    assert missing.returncode == 2 and "absent.jsonl does not exist" in missing.stderr


def test_cli_unreachable_server(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"prompt": "p", "completions": [{"model": "m", "content": "x"}, {"model": "n", "content": "y"}]}) + "\n")
    url = f"http://127.0.0.1:{free_loopback_port()}"
    result = run_cli("push", str(good), "--dataset", "d", env={"ARGILLA_API_URL": url, "ARGILLA_API_KEY": "k"})
    assert result.returncode == 2 and f"cannot reach Argilla at {url}" in result.stderr
    assert "annotation serve" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_cli_wrong_api_key(argilla):
    result = argilla.cli("status", env={"ARGILLA_API_URL": argilla.api_url, "ARGILLA_API_KEY": "wrong-key"}, data_dir=False)
    assert result.returncode == 2
    assert f"Argilla at {argilla.api_url} rejected the API key from ARGILLA_API_URL/ARGILLA_API_KEY (HTTP 401)" in result.stderr


def test_stop_leaves_a_reused_pid_alone_and_finds_a_group_that_outlived_its_leader(tmp_path):
    from annotation.server.process_records import leftovers, record_for, stop_leftovers, write_records

    # a stranger: a real process under a recorded pid whose start time differs (the pid was reused)
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    # a group whose leader exits at once, leaving a member (as a server's forked child would)
    orphaned = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!"], start_new_session=True, stdout=subprocess.PIPE, text=True)
    member = int(orphaned.stdout.readline())
    orphaned.wait()
    try:
        record = record_for("server", stranger.pid, 15)
        reused = dataclasses.replace(record, start_time=record.start_time - 1)
        write_records(tmp_path, [reused, record_for("worker", orphaned.pid, 15)])
        assert [(r.name, pids) for r, pids in leftovers(tmp_path)] == [("worker", [member])]
        assert [r.name for r, _ in stop_leftovers(tmp_path, grace_s=5)] == ["worker"]
        assert stranger.poll() is None
        assert not Path(f"/proc/{member}").exists() or _zombie(member)
        assert not (tmp_path / "processes.json").exists()
    finally:
        stranger.kill()
        stranger.wait()


def _zombie(pid: int) -> bool:
    stat_text = Path(f"/proc/{pid}/stat").read_text()
    return stat_text[stat_text.rindex(")") + 2] == "Z"


@pytest.mark.parametrize("command, expected", [
    (["push", "{pairs}", "--dataset", "d", "--max-pairs-per-prompt", "0"], "--max-pairs-per-prompt must be at least 1, not 0"),
    (["push", "{pairs}", "--dataset", "d", "--batch-size", "501"],
     "--batch-size must be between 1 and 500 (argilla-server's most records per request), not 501"),
    (["from-preferences", "{rows}", "--out", "{out}", "--gold", "-1"], "--gold must be 0 or more, not -1"),
    (["from-preferences", "{rows}", "--out", "{out}", "--limit", "0"], "--limit must be at least 1, not 0"),
    (["generate", "{prompts}", "--out", "{out}", "--model", "m", "--samples", "0"], "--samples must be at least 1, not 0"),
    (["generate", "{prompts}", "--out", "{out}", "--model", "m", "--temperature", "-1"], "--temperature must be at least 0, not -1.0"),
    (["generate", "{prompts}", "--out", "{out}", "--model", "m", "--tensor-parallel-size", "0"],
     "--tensor-parallel-size must be at least 1, not 0"),
])
def test_cli_numbers_out_of_range_are_one_line_before_any_work(tmp_path, capsys, command, expected):
    """Each was a traceback (`--gold -1`), an empty file written without a word (`--limit 0`, `--samples 0`),
    a miscount (`--max-pairs-per-prompt -1` left out 2 of 1 pair) or a silent clamp (`--batch-size`)."""
    from annotation.__main__ import main

    files = {"pairs": tmp_path / "pairs.jsonl", "rows": tmp_path / "rows.jsonl", "prompts": tmp_path / "prompts.jsonl",
             "out": tmp_path / "out.jsonl"}
    files["pairs"].write_text(json.dumps({"prompt": "p", "completions": [{"model": "m", "content": "x"}, {"model": "n", "content": "y"}]}) + "\n")
    files["rows"].write_text(json.dumps({"prompt": "p", "chosen": "x", "rejected": "y"}) + "\n")
    files["prompts"].write_text(json.dumps({"prompt": "p"}) + "\n")
    # checked before any file is read or any server asked (none runs at --data-dir)
    assert main([part.format(**files) for part in command] + (["--data-dir", str(tmp_path / "absent")] if command[0] == "push" else [])) == 2
    assert capsys.readouterr().err == f"error: {expected}\n"
    assert not files["out"].exists()
