"""A round stopped by Ctrl-C while it is scored, and again while it trains: the same command goes on from
there (no second sampling, no second scoring, DPO from its last checkpoint), and the round's benchmark
judge (a `judge:` section, the loopback scripted judge) writes round-1/judge/ and its scores in rounds.json."""

import _thread
import contextlib
import io
import json
import os
import threading
import time
from pathlib import Path

import pytest

from align.iterate.report import chart_series
from tests.conftest import sometimes_prompt
from tests.iterate.support import run_iterate, write_prompts

pytestmark = pytest.mark.slow


def interrupt_when(path: Path, timeout_s: float = 600) -> threading.Thread:
    """Ctrl-C the main thread (KeyboardInterrupt, as SIGINT gives) once `path` exists."""
    def watch():
        deadline = time.monotonic() + timeout_s
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if path.exists():
            _thread.interrupt_main()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def phases(out: Path) -> dict:
    return json.loads((out / "round-1/phases.json").read_text())


@pytest.fixture(scope="module")
def interrupted_twice(tmp_path_factory, sometimes_answer_sft_dir, paris_judge):
    work = tmp_path_factory.mktemp("iterate-resume")
    out = work / "run"
    prompts = write_prompts(work / "prompts.jsonl", [sometimes_prompt(n) for n in range(8)])
    calls, stop_scoring = work / "reward_calls", work / "interrupt_scoring"
    judge = {"benchmarks": ["mt_bench"], "questions_per_category": 1, "max_new_tokens": 6,
             "answer_engine": "transformers", "base_url": paris_judge.base_url, "model": "scripted-judge"}
    command = [out, sometimes_answer_sft_dir, prompts, "--rounds", "1", "--prompts_per_round", "8",
               "--reward_funcs", "tests.iterate.rewards.says_paris_counted", "--learning_rate", "1e-3",
               "--max_steps", "3", "--save_strategy", "steps", "--save_steps", "1", "--judge", json.dumps(judge)]
    seen = {}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ITERATE_REWARD_CALLS", str(calls))
        env.setenv("ITERATE_INTERRUPT_SCORING", str(stop_scoring))
        env.delenv("JUDGE_BASE_URL", raising=False)
        stop_scoring.touch()
        with pytest.raises(KeyboardInterrupt):  # 1: Ctrl-C while scoring
            run_iterate(*command)
        seen["after sampling"] = phases(out)
        seen["samples"] = [[s["text"] for s in row["samples"]]
                           for row in map(json.loads, (out / "round-1/samples.jsonl").read_text().splitlines())]
        first_checkpoint = out / "round-1/dpo/checkpoint-1"
        watcher = interrupt_when(first_checkpoint / "trainer_state.json")
        with pytest.raises(KeyboardInterrupt):  # 2: Ctrl-C while training, after its first checkpoint
            run_iterate(*command)
        watcher.join()
        seen["after scoring"] = phases(out)
        seen["reward calls after scoring"] = calls.read_text().splitlines()
        seen["checkpoint"] = {p.name: p.stat().st_mtime_ns for p in first_checkpoint.iterdir()}
        seen["pairs"] = (out / "round-1/pairs.jsonl").stat().st_mtime_ns
        with contextlib.redirect_stdout(io.StringIO()) as said:
            summaries = run_iterate(*command)  # 3: the same command finishes the round
        seen["said on resume"] = said.getvalue()
    return out, seen, summaries, calls


def test_a_round_stopped_while_scored_does_not_sample_again(interrupted_twice):
    out, seen, _, _ = interrupted_twice
    assert set(seen["after sampling"]) == {"sampled"}
    assert set(seen["after scoring"]) == {"sampled", "scored"}
    assert seen["after scoring"]["sampled"] == seen["after sampling"]["sampled"]  # not sampled again
    samples = [json.loads(line) for line in (out / "round-1/samples.jsonl").read_text().splitlines()]
    assert [[s["text"] for s in row["samples"]] for row in samples] == seen["samples"]
    assert all("reward" in s for row in samples for s in row["samples"])


def test_a_round_stopped_while_training_resumes_from_its_checkpoint(interrupted_twice):
    out, seen, summaries, calls = interrupted_twice
    assert seen["reward calls after scoring"] == ["32"]  # scored once: 8 prompts x 4 samples
    assert calls.read_text().splitlines() == ["32"]  # ... and not again when the round went on
    done = phases(out)
    assert done["sampled"] == seen["after sampling"]["sampled"] and done["scored"] == seen["after scoring"]["scored"]
    assert (out / "round-1/pairs.jsonl").stat().st_mtime_ns == seen["pairs"]
    checkpoint = out / "round-1/dpo/checkpoint-1"
    assert {p.name: p.stat().st_mtime_ns for p in checkpoint.iterdir()} == seen["checkpoint"]  # resumed, not redone
    assert f"resuming from {checkpoint}" in seen["said on resume"]  # align.dpo's resume_point chose it
    assert summaries[0]["dpo"]["global_steps"] == 3 and set(done) == {"sampled", "scored", "trained", "judged"}


def test_the_round_is_judged_and_its_scores_reported(interrupted_twice):
    out, _, summaries, _ = interrupted_twice
    summary = json.loads((out / "round-1/judge/summary.json").read_text())
    assert (out / "round-1/judge/report.md").is_file()
    (model,) = summary["benchmarks"]["mt_bench"]
    assert summary["benchmarks"]["mt_bench"][model]["n_items"] == 16
    score = summaries[0]["judge"]["mt_bench"][model]
    assert isinstance(score, float) and 1 <= score <= 10
    assert json.loads((out / "rounds.json").read_text())["rounds"][0]["judge"] == {"mt_bench": {model: score}}
    assert chart_series(summaries)["judge: mt_bench"] == [score]
    assert (out / "rounds.png").stat().st_size > 0 and f"mt_bench: {score:.2f}" in (out / "rounds.md").read_text()
    assert not (out / "round-1/dpo/judge").exists()  # judged once, by the round, not by align.dpo too
