"""`make demo`: its annotation input and held-out set (pure), and the whole demo once (slow)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import datasets
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


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    """`make demo` as the README runs it (`python -m align.demo` once .venv exists), once for the tests below:
    its output directory and what it printed."""
    out = tmp_path_factory.mktemp("demo") / "demo-output"
    done = subprocess.run([sys.executable, "-m", "align.demo", "--out", str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done.stdout


@pytest.mark.slow
def test_the_demo_runs_end_to_end_and_dpo_moves_the_held_out_preference(demo):
    """Every stage, the judge's report, and the held-out check's own figures (before and after DPO), read
    from what it printed."""
    out, printed = demo
    assert (out / "dpo" / "judge" / "report.md").exists()
    summary = json.loads((out / "dpo" / "training_summary.json").read_text())
    assert summary["global_steps"] > 0 and summary["final_loss"] < summary["first_loss"]
    before, after = map(int, re.search(r"in (\d+)% of pairs before DPO and (\d+)% after", printed).groups())
    assert after > before, printed[-2000:]


@pytest.mark.slow
def test_the_demos_annotation_round_writes_dpo_input(demo):
    """The annotation leg (`annotation.demo.scripted_annotation_round` on a server of its own): every pushed pair
    answered by both scripted stand-ins, counted as scripted; with no noise they agree on every record; the pull
    keeps each pair holding the rule-following answer, as TRL's conversational preference rows, and drops the
    pairs of two rule-breaking answers as both bad. Expected counts from the push input, by hand: a prompt with
    n answers gives n(n-1)/2 pairs, n-1 of them with the rule follower."""
    out, _ = demo
    answers_per_prompt = [len(json.loads(line)["completions"])
                          for line in (out / "data" / "annotation_pairs.jsonl").read_text().splitlines()]
    records = sum(n * (n - 1) // 2 for n in answers_per_prompt)
    kept = sum(n - 1 for n in answers_per_prompt)
    card = json.loads((out / "preferences" / "card.json").read_text())
    assert card["counts"] == {"records": records, "kept": kept, "dropped": records - kept}
    assert card["dropped"]["both_bad"] == records - kept
    assert card["responses"]["submitted"] == 2 * records and card["scripted_responses"] == 2 * records
    assert "warning" in card
    assert card["agreement"]["percent_agreement"] == 1.0
    rows = datasets.load_from_disk(str(out / "preferences"))
    assert len(rows) == kept
    for row in rows:
        assert row["chosen_model"] == "rule-follower" and row["votes"] == 2
        assert row["rejected_model"].startswith("rule-breaker-")
        assert row["chosen"][0]["role"] == "assistant" and row["prompt"][-1]["role"] == "user"
