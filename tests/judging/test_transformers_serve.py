"""Against a real model server: `transformers serve` with the random tiny Klear, on loopback, offline.

Its judgments are noise, so these tests pin the failure path: every unparseable judgment is
retried, counted, shown and excluded, and no score is invented.
"""

import json

import pytest

from align.judging.answers import EndpointBackend, generate_answers
from align.judging.config import JudgeConfig
from align.judging.pairwise import PairwiseJudgeError, judge_pair
from align.judging.judgments import JudgeRequest, judge_answers
from judging_support import write_fastchat_answers

pytestmark = pytest.mark.slow


def test_unparseable_judgments_are_retried_counted_and_excluded(tmp_path, transformers_server):
    answers = write_fastchat_answers(tmp_path / "tiny.jsonl", {81: ["An answer.", "Another."], 111: ["4", "5"]})
    judge = JudgeConfig(base_url=transformers_server.base_url, model=transformers_server.model,
                        max_tokens=8, parse_retries=1, concurrency=2)
    report = judge_answers(tmp_path / "judge", JudgeRequest(mt_bench_answers=answers, question_ids=(81, 111)), judge)

    summary = json.loads((tmp_path / "judge" / "summary.json").read_text())
    scores = summary["benchmarks"]["mt_bench"]["tiny"]
    assert scores["overall"] is None and scores["turn_1"] is None  # nothing invented
    assert (scores["n_items"], scores["n_scored"], scores["items_without_score"]) == (4, 0, 4)
    assert summary["counts"]["judgments_failed"] == 4
    assert summary["counts"]["api_calls"] == 8  # each judgment tried twice
    assert summary["counts"]["failed_by_reason"] == {"unparseable after 2 attempt(s)": 4}
    assert summary["judge"]["model"] == transformers_server.model
    rows = [json.loads(line) for line in next((tmp_path / "judge" / "runs").glob("*/judgments.jsonl")).read_text().splitlines()]
    assert all(len(row["failed_attempts"]) == 2 and row["score"] is None for row in rows)
    assert all(attempt["finish_reason"] == "length" for row in rows for attempt in row["failed_attempts"])
    assert "4 judgments failed for good" in report.read_text()


def test_answers_through_an_openai_compatible_endpoint(transformers_server):
    backend = EndpointBackend(transformers_server.base_url, transformers_server.model, concurrency=2)
    prompts = [[{"role": "user", "content": "Name a colour."}],
               [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Count to three."}]]
    answers = generate_answers(prompts, backend, temperature=0.7, max_new_tokens=6, n=2)
    assert [len(a) for a in answers] == [2, 2] and all(isinstance(x, str) for a in answers for x in a)
    assert backend.stats["answers"] == 4
    assert backend.stats["truncated"] + backend.stats["empty"] >= 1  # a random model rarely stops on its own


def test_pairwise_judge_without_a_verdict_raises_with_the_raw_judgments(transformers_server):
    judge = JudgeConfig(base_url=transformers_server.base_url, model=transformers_server.model,
                        max_tokens=6, parse_retries=0)
    with pytest.raises(PairwiseJudgeError) as raised:
        judge_pair([{"role": "user", "content": "Which is better?"}], "Answer A", "Answer B", judge=judge)
    assert len(raised.value.raw) == 2  # both orders asked once, neither parsed


def test_a_refused_request_is_an_api_failure_not_retried_and_not_cached(tmp_path, transformers_server):
    answers = write_fastchat_answers(tmp_path / "tiny.jsonl", {81: ["An answer.", "Another."]})
    judge = JudgeConfig(base_url=transformers_server.base_url, model="not-the-served-model", max_tokens=4)
    judge_answers(tmp_path / "judge", JudgeRequest(mt_bench_answers=answers, question_ids=(81,)), judge)
    summary = json.loads((tmp_path / "judge" / "summary.json").read_text())
    assert summary["counts"]["judgments_failed"] == 2 and summary["counts"]["api_retries"] == 0, summary["counts"]
    assert all(f["error"].startswith("api: HTTP 400") for f in summary["failures"])
    assert not list((tmp_path / "judge" / "cache").glob("*/*.json"))  # a re-run will try again
