"""Kill a real judging run mid-way; the re-run makes exactly the missing calls (counted at the server)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from align.judging.client import JudgeCache
from align.judging.config import JudgeConfig
from align.judging.judgments import JudgeRequest, judge_answers
from align.judging.runs import list_runs
from judging_support import start_scripted_judge, stop, write_fastchat_answers

QUESTIONS = [81, 82, 91, 92, 101, 102, 111, 112, 121, 122, 131, 132, 141, 142, 151, 152]


@pytest.fixture
def slow_scripted_judge(tmp_path):
    judge = start_scripted_judge(tmp_path / "slow_judge", delay_s=0.15)
    yield judge
    stop(judge.process)


@pytest.mark.slow
def test_killed_run_resumes_with_only_the_missing_calls(tmp_path, slow_scripted_judge):
    answers = write_fastchat_answers(
        tmp_path / "answers" / "alpha.jsonl",
        {qid: [f"q{qid} one SCRIPTED_SCORE=7", f"q{qid} two SCRIPTED_SCORE=6"] for qid in QUESTIONS},
    )
    out = tmp_path / "judge"
    total = len(QUESTIONS) * 2
    command = [sys.executable, "-m", "align.judging", "judge", str(out), "--mt-bench-answers", str(answers),
               "--question-ids", *map(str, QUESTIONS), "--concurrency", "2"]
    env = dict(os.environ, JUDGE_BASE_URL=slow_scripted_judge.base_url, JUDGE_MODEL="scripted-judge")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while slow_scripted_judge.requests() < 10:
        assert process.poll() is None, process.stdout.read().decode()
        assert time.monotonic() < deadline, "the judging run never got going"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()

    first_run_calls = slow_scripted_judge.requests()
    cached = len(JudgeCache(out / "cache"))
    assert 0 < cached < total and first_run_calls >= cached
    (interrupted,) = list_runs(out)
    assert not interrupted.finished
    assert len(interrupted.rows()) <= cached  # rows stream out after their call is cached

    config = JudgeConfig.from_mapping({"base_url": slow_scripted_judge.base_url, "model": "scripted-judge",
                                       "concurrency": 4}, env={})
    request = JudgeRequest(mt_bench_answers=answers, question_ids=tuple(QUESTIONS))
    judge_answers(out, request, config)
    assert slow_scripted_judge.requests() - first_run_calls == total - cached  # only the missing calls

    (resumed,) = list_runs(out)  # the interrupted run was resumed, not abandoned
    assert resumed.run_id == interrupted.run_id and resumed.finished and resumed.meta["resumed"] == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["benchmarks"]["mt_bench"]["alpha"]["overall"] == 6.5
    assert summary["counts"]["judgments"] == total and summary["counts"]["from_cache"] == cached

    judge_answers(out, request, config)  # and a third run costs nothing
    assert slow_scripted_judge.requests() - first_run_calls == total - cached
