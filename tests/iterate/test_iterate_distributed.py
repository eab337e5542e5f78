"""align.iterate under `accelerate launch`: 2 CPU processes (gloo, DeepSpeed ZeRO-3, expert parallel 2), one
round scored by the `judge` scorer against the loopback scripted judge that prefers the answer naming Paris.
Sampling and judging run on the main process (which must load the policy unpartitioned, or it waits for a
rank that is not loading); DPO on both ranks; every line the stage prints, printed once."""

import json

import pytest

from tests.conftest import SOMETIMES_ANSWER, SOMETIMES_OTHER, sometimes_prompt
from tests.distributed import run_2proc
from tests.iterate.support import greedy, iterate_argv, write_prompts

pytestmark = pytest.mark.slow


def test_one_round_judged_under_accelerate_launch(tmp_path, sometimes_answer_sft_dir, paris_judge):
    prompts = write_prompts(tmp_path / "prompts.jsonl", [sometimes_prompt(n) for n in range(8)])
    out, log = tmp_path / "run", tmp_path / "launch.log"
    judge = json.dumps({"base_url": paris_judge.base_url, "model": "scripted-judge"})
    run_2proc(["-m", "align.iterate"],  # raises unless the launcher, and so both ranks, exit 0
              iterate_argv(out, sometimes_answer_sft_dir, prompts, "--rounds", "1", "--prompts_per_round", "8",
                           "--max_steps", "2", "--scorer", "judge", "--scorer_judge", judge), log)
    rounds = json.loads((out / "rounds.json").read_text())["rounds"]
    samples = [json.loads(line) for line in (out / "round-1/samples.jsonl").read_text().splitlines()]
    # the judge's taste decides exactly the prompts with an answer naming Paris and one that does not
    decided = [row for row in samples if len({"Paris" in s["text"] for s in row["samples"]}) == 2]
    assert [r["round"] for r in rounds] == [1] and rounds[0]["pairs"] == len(decided) > 0
    assert rounds[0]["dropped"].get("order flip", 0) == 0 and rounds[0]["dpo"]["global_steps"] == 2
    pairs = [json.loads(line) for line in (out / "round-1/pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == rounds[0]["pairs"]
    assert all("Paris" in p["chosen"][0]["content"] and "Paris" not in p["rejected"][0]["content"] for p in pairs)
    # the policy gathered from ZeRO-3's partitions loads on its own and still answers as it was taught
    assert set(greedy(out / "round-1/dpo", [sometimes_prompt(100), sometimes_prompt(101)])) <= {SOMETIMES_ANSWER,
                                                                                                   SOMETIMES_OTHER}
    printed = log.read_text().splitlines()
    for once in ("prompts:", "scorer: judge scripted-judge at", "round 1: sampled 4 answers to each of 8 prompts",
                 "pairs from 8 prompts by judge", "training data:", "dpo: 2 steps", "align.iterate: 1 round(s)"):
        assert sum(once in line for line in printed) == 1, (once, printed[-40:])

