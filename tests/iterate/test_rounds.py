"""On-policy DPO rounds in one process: a reward teaches the tiny Klear an answer it gave only sometimes;
a finished run extended by a round runs that round only; a judge biased by position stops the round. (A
judge with a taste makes the pairs: tests/iterate/test_iterate_distributed.py, under accelerate launch.)"""

import json
from pathlib import Path

import pytest

from align.data.preference import read_preference_rows
from align.data.sources import DataReport, Source
from align.iterate.scorers import NoUsablePairs
from tests.conftest import SOMETIMES_ANSWER, SOMETIMES_OTHER, sometimes_prompt
from tests.iterate.support import greedy, run_iterate, write_prompts

pytestmark = pytest.mark.slow
HELD_OUT = [sometimes_prompt(n) for n in range(100, 106)]


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory, sometimes_answer_sft_dir):
    """Two rounds with the reward `tests.iterate.rewards.says_paris`, on 16 fresh SFT prompts each."""
    work = tmp_path_factory.mktemp("iterate-reward")
    prompts = write_prompts(work / "prompts.jsonl", [sometimes_prompt(n) for n in range(48)])
    out = work / "run"
    summaries = run_iterate(out, sometimes_answer_sft_dir, prompts, "--rounds", "2", "--learning_rate", "1e-3",
                            "--reward_funcs", "tests.iterate.rewards.says_paris")
    return out, prompts, summaries


def test_a_reward_teaches_the_answer_it_rewards_in_two_rounds(two_rounds, sometimes_answer_sft_dir):
    out, _, summaries = two_rounds
    before = greedy(sometimes_answer_sft_dir, HELD_OUT)
    assert all(answer == SOMETIMES_OTHER for answer in before), before  # the SFT model says it only sometimes
    round_1 = [json.loads(line) for line in (out / "round-1/pairs.jsonl").read_text().splitlines()]
    assert round_1 and all("Paris" in p["chosen"][0]["content"] and "Paris" not in p["rejected"][0]["content"]
                           for p in round_1)
    after = greedy(out / "round-2/dpo", HELD_OUT)
    assert all(answer == SOMETIMES_ANSWER for answer in after), after
    assert [s["round"] for s in summaries] == [1, 2]
    assert summaries[1]["mean_reward"] > summaries[0]["mean_reward"]
    assert summaries[0]["policy"] == str(sometimes_answer_sft_dir)
    assert summaries[1]["policy"] == str(out / "round-1/dpo")  # on-policy: round 2 samples round 1's policy
    rounds = json.loads((out / "rounds.json").read_text())["rounds"]
    assert rounds == json.loads(json.dumps(summaries))
    samples = [json.loads(line) for line in (out / "round-1/samples.jsonl").read_text().splitlines()]
    assert len(samples) == 16 and all(len(r["samples"]) == 4 for r in samples)
    ties = sum(len({s["reward"] for s in r["samples"]}) == 1 for r in samples)
    assert rounds[0]["dropped"].get("tie", 0) == ties and rounds[0]["pairs"] == 16 - ties
    assert (out / "rounds.png").stat().st_size > 0 and "| 2 |" in (out / "rounds.md").read_text()


def test_the_pairs_are_what_align_dpo_reads(two_rounds):
    out, _, _ = two_rounds
    report = DataReport()
    rows = read_preference_rows([Source(str(out / "round-1/pairs.jsonl"))], report)
    first = json.loads((out / "round-1/pairs.jsonl").read_text().splitlines()[0])
    assert len(rows) == json.loads((out / "rounds.json").read_text())["rounds"][0]["pairs"]
    assert rows[0]["prompt"] == first["prompt"] and rows[0]["chosen"] == first["chosen"]


def test_a_larger_rounds_runs_only_the_new_round(two_rounds):
    out, prompts, _ = two_rounds
    before = {path: path.stat().st_mtime_ns for path in out.glob("round-[12]/**/*") if path.is_file()}
    summaries = run_iterate(out, Path("unused-after-round-1"), prompts, "--rounds", "3",
                            "--reward_funcs", "tests.iterate.rewards.says_paris")
    assert [s["round"] for s in summaries] == [1, 2, 3]
    assert {path: path.stat().st_mtime_ns for path in before} == before  # finished rounds untouched
    assert summaries[2]["policy"] == str(out / "round-2/dpo")
    assert (out / "round-3/dpo/training_summary.json").is_file()


def test_a_judge_biased_by_position_stops_the_round(tmp_path, sometimes_answer_sft_dir, paris_judge):
    # The scripted judge answers "[[A]]" to every comparison whose question holds SCRIPTED_BIAS_A.
    prompts = write_prompts(tmp_path / "prompts.jsonl", [f"{sometimes_prompt(n)} SCRIPTED_BIAS_A" for n in range(8)])
    with pytest.raises(NoUsablePairs) as refused:
        run_iterate(tmp_path / "run", sometimes_answer_sft_dir, prompts, "--scorer", "judge", "--prompts_per_round", "8",
                    "--scorer_judge", json.dumps({"base_url": paris_judge.base_url, "model": "scripted-judge"}))
    message = str(refused.value)
    scoring = json.loads((tmp_path / "run/round-1/scoring.json").read_text())
    assert scoring["pairs"] == 0 and scoring["dropped"]["order flip"] == scoring["comparisons"] > 0
    assert f"{scoring['comparisons']} order flips" in message and "flipped with the order" in message
    assert "\n" not in message and not (tmp_path / "run/round-1/dpo").exists()

