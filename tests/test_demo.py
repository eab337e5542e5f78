"""`make demo`: its annotation input and held-out set (pure), and the whole demo once (slow)."""

import json
import re
import subprocess
import sys

import pytest

from align.data.demo import write_demo_data
from align.demo import REPO_ROOT, RULE_BREAKERS_PER_PROMPT, annotation_pairs


def test_each_prompt_is_pushed_once_with_its_rule_follower_and_rule_breakers(tmp_path):
    data = write_demo_data(tmp_path / "data")
    path, rule_follower, sent = annotation_pairs(data["dpo"], tmp_path / "push.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    pairs = [json.loads(line) for line in data["dpo"].read_text().splitlines()]
    prompts = {p["prompt"][0]["content"] for p in pairs}
    assert rule_follower == {p["prompt"][0]["content"]: p["chosen"][0]["content"] for p in pairs}
    assert sorted(r["prompt"] for r in rows) == sorted(prompts)  # every prompt, once
    for row in rows:
        answers = [c["content"] for c in row["completions"]]
        assert answers[0] == rule_follower[row["prompt"]] and rule_follower[row["prompt"]] not in answers[1:]
        assert 2 <= len(answers) <= 1 + RULE_BREAKERS_PER_PROMPT and len(set(answers)) == len(answers)
        assert {(row["prompt"], a) for a in answers[1:]} <= sent
    # the held-out check keeps eval pairs whose rule-breaking answer was not sent: some, not all
    held_out = [p for p in map(json.loads, data["dpo_eval"].read_text().splitlines())
                if (p["prompt"][0]["content"], p["rejected"][0]["content"]) not in sent]
    assert 20 <= len(held_out) < 64


@pytest.mark.slow
def test_the_demo_runs_end_to_end_and_dpo_moves_the_held_out_preference(tmp_path):
    """`make demo` as the README runs it (`python -m align.demo` once .venv exists): every stage, the judge's
    report, and the held-out check's own figures (before and after DPO), read from what it printed."""
    out = tmp_path / "demo-output"
    done = subprocess.run([sys.executable, "-m", "align.demo", "--out", str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (out / "dpo" / "judge" / "report.md").exists()
    summary = json.loads((out / "dpo" / "training_summary.json").read_text())
    assert summary["global_steps"] > 0 and summary["final_loss"] < summary["first_loss"]
    before, after = map(int, re.search(r"in (\d+)% of pairs before DPO and (\d+)% after", done.stdout).groups())
    assert after > before, done.stdout[-2000:]
