"""A judge endpoint that cannot serve the run stops it within seconds with the reason; a bad URL
fails before any call; a resumed run records the endpoint it really used; a damaged cache file
is asked for again. Servers are real processes on loopback (the scripted judge answers 401 to
`Bearer wrong-key` as OpenAI does)."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from align.judging.__main__ import main
from align.judging.client import JudgeCache, JudgeClient, JudgeEndpointError
from align.judging.config import JudgeConfig, JudgeConfigError
from align.judging.judgments import JudgeRequest, judge_answers, run_tasks
from align.judging.runs import list_runs
from judging_support import REAL

ANSWERS = REAL / "answers" / "mistral-orpo-mix.jsonl"
SUBSET = ("--question-ids", "81", "91")  # the questions answered in that file


def closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening, then closed: connections are refused
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def run_cli(monkeypatch, capsys, caplog):
    """The command line's main() in this process (no interpreter start per case). No wall-clock
    assertion (the machine is shared): the stop shows in the exit code and in no call retried."""
    for name in ("JUDGE_BASE_URL", "JUDGE_MODEL", "JUDGE_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, env: dict | None = None) -> tuple[int, str]:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        code = main(list(args))
        return code, capsys.readouterr().err + caplog.text

    return run


def test_dead_endpoint_exits_non_zero_at_once_saying_why(tmp_path, run_cli):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    code, stderr = run_cli("judge", str(tmp_path / "judge"), "--mt-bench-answers", str(ANSWERS), *SUBSET,
                           "--judge-base-url", url, "--judge-model", "gpt-4")
    assert code == 2
    assert f"error: could not connect to {url} (connection refused)" in stderr
    assert "judged" not in stderr and "retry" not in stderr.lower()
    assert not (tmp_path / "judge" / "runs").exists()  # stopped before a run was started


def test_a_url_that_is_not_http_fails_before_any_call(tmp_path, run_cli):
    code, stderr = run_cli("judge", str(tmp_path / "judge"), "--mt-bench-answers", str(ANSWERS), *SUBSET,
                           "--judge-base-url", "127.0.0.1:8000/v1", "--judge-model", "gpt-4")
    assert code == 2
    assert "base_url must be an http:// or https:// URL with a host, got '127.0.0.1:8000/v1'" in stderr
    for url in ("ftp://judge/v1", "http:///v1", "localhost:8000"):
        with pytest.raises(JudgeConfigError, match="http:// or https://"):
            JudgeConfig.from_mapping({"base_url": url, "model": "m"}, env={})


def test_an_authentication_error_stops_the_run_at_once(tmp_path, scripted_judge, run_cli):
    requests = scripted_judge.requests()
    code, stderr = run_cli("judge", str(tmp_path / "judge"), "--mt-bench-answers", str(ANSWERS), *SUBSET,
                           "--judge-base-url", scripted_judge.base_url, "--judge-model", "gpt-4",
                           env={"JUDGE_API_KEY": "wrong-key"})
    assert code == 2 and scripted_judge.requests() == requests  # refused at GET /models: no judge call
    assert f"error: HTTP 401 from {scripted_judge.base_url}: authentication failed" in stderr
    assert "Incorrect API key provided" in stderr
    # during a run (the key revoked after the preflight) the first 401 stops every worker
    judge = JudgeConfig.from_mapping({"base_url": scripted_judge.base_url, "model": "gpt-4", "api_key": "wrong-key",
                                      "concurrency": 4}, env={})
    from align.data.benchmarks import load_fastchat_answers, load_mt_bench
    from align.judging.tasks import mt_bench_single_tasks, select_questions

    bench = load_mt_bench()
    tasks = mt_bench_single_tasks(bench, select_questions(bench.questions, question_ids=(81, 91)),
                                  {"m": load_fastchat_answers(ANSWERS)})
    client = JudgeClient(judge)
    with pytest.raises(JudgeEndpointError, match="HTTP 401"):
        run_tasks(client, tasks, on_row=lambda row: None)
    assert client.stats["api_calls"] <= judge.concurrency  # no call after the stop but those in flight


def test_a_resumed_run_records_the_endpoint_it_used(tmp_path, scripted_judge):
    out = tmp_path / "judge"
    request = JudgeRequest(mt_bench_answers=ANSWERS, question_ids=(81, 91))
    first = JudgeConfig.from_mapping({"base_url": scripted_judge.base_url, "model": "gpt-4"}, env={})
    judge_answers(out, request, first)
    (run,) = list_runs(out)
    run.meta["finished"] = None  # as if it had been killed before finishing
    run.save_meta()
    run.summary_path.unlink()
    moved = scripted_judge.base_url.replace("127.0.0.1", "localhost")  # the same server, another address
    judge_answers(out, request, first.with_overrides(base_url=moved))
    (run,) = list_runs(out)
    assert run.meta["resumed"] == 1 and run.meta["judge"]["base_url"] == moved
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge"]["base_url"] == moved
    assert summary["judge"]["base_urls_used"] == [scripted_judge.base_url, moved]
    assert f"reached the judge at: {scripted_judge.base_url}, {moved}" in (out / "report.md").read_text()


def test_a_damaged_cache_file_is_requested_again_not_a_type_error(tmp_path, scripted_judge):
    out = tmp_path / "judge"
    request = JudgeRequest(mt_bench_answers=ANSWERS, question_ids=(81,))
    judge = JudgeConfig.from_mapping({"base_url": scripted_judge.base_url, "model": "gpt-4"}, env={})
    judge_answers(out, request, judge)
    before = json.loads((out / "summary.json").read_text())["benchmarks"]
    files = sorted((out / "cache").glob("*/*.json"))
    assert len(files) == 2
    files[0].write_text("[]")  # valid JSON, not a cached response
    files[1].write_bytes(b"\xff\xfe not json")
    cache = JudgeCache(out / "cache")
    assert cache.get(files[0].stem) == (None, True) and cache.get(files[1].stem) == (None, True)
    requests = scripted_judge.requests()
    judge_answers(out, request, judge)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["benchmarks"] == before and scripted_judge.requests() - requests == 2
    assert summary["counts"]["api_calls"] == 2 and summary["counts"]["cache_damaged"] == 2
    assert all(cache.get(path.stem)[0] for path in files)  # rewritten


class _HtmlEverywhere(BaseHTTPRequestHandler):
    """A web server in front of the judge's address: `/v1/models` looks right, a completion is an HTML page."""

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        self._answer(json.dumps({"object": "list", "data": [{"id": "gpt-4", "object": "model"}]}).encode(),
                     "application/json")

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(b"<html><body>Welcome to nginx!</body></html>", "text/html")

    def log_message(self, *args):
        pass


def test_an_html_page_instead_of_a_completion_stops_the_run_in_one_line(tmp_path, run_cli):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlEverywhere)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        code, stderr = run_cli("judge", str(tmp_path / "judge"), "--mt-bench-answers", str(ANSWERS), *SUBSET,
                               "--judge-base-url", url, "--judge-model", "gpt-4")
    finally:
        server.shutdown()
    assert code == 2
    assert f"{url} answered HTTP 200 with a body that is not an OpenAI chat completion" in stderr
    assert "Welcome to nginx!" in stderr and "AttributeError" not in stderr


class _BrokenJudge(BaseHTTPRequestHandler):
    """Lists the judge model, answers every completion with HTTP 500 and a body saying why."""

    def do_GET(self):  # noqa: N802
        body = json.dumps({"object": "list", "data": [{"id": "gpt-4", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"upstream model crashed: CUDA error: out of memory"
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _SilentJudge(_BrokenJudge):
    """Accepts every request and never answers (until the test ends); GET too when `silent_get`."""

    released: threading.Event  # one per server (loopback_judge)
    silent_get = False

    def do_GET(self):  # noqa: N802
        if self.silent_get:
            self.released.wait()
        else:
            super().do_GET()

    def do_POST(self):  # noqa: N802
        self.released.wait()


@pytest.fixture
def loopback_judge():
    servers, released = [], threading.Event()

    def start(handler) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), type(handler.__name__, (handler,), {"released": released}))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    released.set()
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_judge_failing_every_request_is_named_with_its_status_and_body(tmp_path, run_cli, loopback_judge):
    url = loopback_judge(_BrokenJudge)
    code, stderr = run_cli("judge", str(tmp_path / "judge"), "--mt-bench-answers", str(ANSWERS), *SUBSET,
                           "--judge-base-url", url, "--judge-model", "gpt-4", "--api-retries", "1")
    assert code == 2
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {url} failed every request: no answer in ")
    assert line.endswith("attempt(s) so far (2 per request), the last HTTP 500, its body starting "
                         "'upstream model crashed: CUDA error: out of memory'")
    assert "retried" not in stderr


def test_a_judge_that_never_answers_stops_after_the_flags_attempts(tmp_path, run_cli, loopback_judge):
    """--timeout-s 1 --api-retries 1: two attempts of a second each (the defaults would wait 600 s x 7),
    shown by what the run says it waited for and gave up on, not by a clock (no timed assertions)."""
    url = loopback_judge(_SilentJudge)
    code, stderr = run_cli("judge", str(tmp_path / "judge"), "--mt-bench-answers", str(ANSWERS), *SUBSET,
                           "--judge-base-url", url, "--judge-model", "gpt-4", "--timeout-s", "1", "--api-retries", "1")
    assert code == 2
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert line == (f"error: no answer from {url} (model gpt-4) within 1 s, in 2 attempt(s) "
                    "(timeout_s / --timeout-s, api_retries / --api-retries)")
    assert f"waiting for {url} (model gpt-4): no answer yet, timeout 1 s, attempt 1 of 2" in stderr
    assert "attempt 2 of 2" in stderr
    # the same names in a recipe's judge: section
    config = JudgeConfig.from_mapping({"base_url": url, "model": "gpt-4", "timeout_s": 1, "api_retries": 1}, env={})
    assert (config.timeout_s, config.api_retries) == (1, 1)
    with pytest.raises(JudgeConfigError, match=r"timeout_s must be a number, got \[1\]"):
        JudgeConfig.from_mapping({"base_url": url, "model": "gpt-4", "timeout_s": [1]}, env={})


def test_a_judge_that_never_answers_its_model_list_stops_at_the_preflight(tmp_path, run_cli, loopback_judge):
    class Silent(_SilentJudge):
        silent_get = True

    url = loopback_judge(Silent)
    code, stderr = run_cli("judge", str(tmp_path / "judge"), "--mt-bench-answers", str(ANSWERS), *SUBSET,
                           "--judge-base-url", url, "--judge-model", "gpt-4", "--timeout-s", "1")
    assert code == 2
    assert f"error: no answer from {url} within 1 s (GET /models)" in stderr
    assert not (tmp_path / "judge" / "runs").exists()


@pytest.mark.parametrize("flag", ["--n", "--batch-size", "--max-new-tokens", "--questions-per-category",
                                  "--tensor-parallel-size"])
def test_a_count_below_one_is_one_line_before_any_request(tmp_path, run_cli, flag):
    """`--batch-size 0` was a thread pool's 'max_workers must be greater than 0', `--questions-per-category 0`
    wrote an empty answer file, `--max-new-tokens 0` was sent to the endpoint."""
    code, stderr = run_cli("generate", "--endpoint", f"http://127.0.0.1:{closed_port()}/v1", "--endpoint-model", "m",
                           "--out", str(tmp_path / "judge"), flag, "0")
    assert code == 2
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert line == f"error: {flag} must be at least 1, got 0"
    assert "connect" not in stderr and not (tmp_path / "judge").exists()
