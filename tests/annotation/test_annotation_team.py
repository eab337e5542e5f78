"""A team on the real server (SQLite and PostgreSQL): annotators through Argilla's SDK with gold
pairs and quality control, and every dead end a new user hit, each now a one-line message or a
result that says why."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import datasets
import httpx
import pytest

from annotation.argilla_adapter import submit_response
from annotation.connection import lookup
from argilla_helpers import dataset_id, write_pairs

pytestmark = pytest.mark.slow

LABELS = ["a", "b", "tie", "both_bad"]


def sdk_client_of(argilla, username: str, password: str):
    """Argilla's SDK client of an annotator (its own API key, read after the web UI's login)."""
    import argilla as rg

    token = httpx.post(f"{argilla.api_url}/api/v1/token", data={"username": username, "password": password})
    me = httpx.get(f"{argilla.api_url}/api/v1/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    return rg.Argilla(api_url=argilla.api_url, api_key=me.json()["api_key"])


def submit_with_sdk(annotator, record, label: str) -> None:
    submit_response(annotator, record, {"preference": label})


def better_side(record) -> str:
    return "a" if record.fields["answer_a"].startswith(("GOOD", "GOLD")) else "b"


def test_three_annotators_one_answering_gold_at_random_is_flagged_excluded_and_counted(argilla, annotators, tmp_path):
    source = tmp_path / "team.jsonl"
    gold = [{"id": f"gold{i}", "prompt": f"Gold question {i}?", "gold": "right",
             "completions": [{"model": "right", "content": f"GOLD right answer {i}"},
                             {"model": "wrong", "content": f"wrong answer {i}"}]} for i in range(6)]
    write_pairs(source, ["T1?", "T2?", "T3?", "Swing?"])
    source.write_text(source.read_text() + "".join(json.dumps(row) + "\n" for row in gold))
    pushed = argilla.cli("push", str(source), "--dataset", "team", "--min-submitted", "3")
    assert pushed.returncode == 0, pushed.stderr

    owner = argilla.client()
    records = list(owner.datasets(name="team", workspace=argilla.credentials["workspace"]).records())
    assert len(records) == 10 and sum("gold" in r.metadata for r in records) == 6
    ann = {name: sdk_client_of(argilla, name, annotators[name]) for name in ("ann1", "ann2", "ann3")}
    rng = random.Random(3)
    gold_right = 0
    for record in records:
        side, other = better_side(record), "b" if better_side(record) == "a" else "a"
        swing = record.fields["prompt"][-1].content == "Swing?"
        submit_with_sdk(ann["ann1"], record, side)
        submit_with_sdk(ann["ann2"], record, other if swing else side)
        if "gold" in record.metadata:  # ann3 answers gold pairs at random...
            label = rng.choice(LABELS)
            gold_right += label == side
        else:  # ...and prefers the weak answer elsewhere
            label = other
        submit_with_sdk(ann["ann3"], record, label)
    assert gold_right / 6 < 0.7  # the draw of seed 3 (checked here, not assumed)

    out = tmp_path / "team-prefs"
    pulled = argilla.cli("pull", "--dataset", "team", "--out", str(out))
    assert pulled.returncode == 0, pulled.stderr
    assert "flagged annotators (votes excluded: 10): ann3" in pulled.stdout
    card = json.loads((out / "card.json").read_text())
    assert card["annotators"]["ann3"] == {
        "gold_answered": 6, "gold_correct": gold_right, "gold_accuracy": pytest.approx(gold_right / 6),
        "agreement_with_majority": 0.0, "majority_compared": 3, "flagged": True, "votes_excluded": 10,
    }
    assert card["annotators"]["ann1"]["gold_accuracy"] == 1.0 and not card["annotators"]["ann1"]["flagged"]
    # ann1 is compared on Swing only (elsewhere ann2 and ann3 split), where both others chose the weak answer
    assert card["annotators"]["ann1"]["agreement_with_majority"] == 0.0
    assert card["annotators"]["ann2"]["agreement_with_majority"] is None
    assert card["quality_control"] == {"gold_pairs": 6, "flagged_annotators": ["ann3"], "votes_excluded": 10}
    assert card["counts"] == {"records": 10, "kept": 3, "dropped": 7}
    assert card["dropped"]["gold"] == 6 and card["dropped"]["no_majority"] == 1  # Swing: 1 vs 1 without ann3
    rows = list(datasets.load_from_disk(str(out)))
    assert sorted(row["prompt"][-1]["content"] for row in rows) == ["T1?", "T2?", "T3?"]
    assert all(row["chosen_model"] == "model-good" and row["annotators"] == ["ann1", "ann2"] for row in rows)

    status = argilla.cli("status", "--dataset", "team", "--json")
    live = json.loads(status.stdout)["team"]
    assert live["min_submitted"] == 3
    assert live["annotators"] == {user: {k: v for k, v in stats.items() if k != "votes_excluded"}
                                  for user, stats in card["annotators"].items()}
    table = argilla.cli("status", "--dataset", "team").stdout
    assert f"ann3" in table and f"gold {gold_right}/6" in table and "FLAGGED" in table


def test_pull_with_nothing_kept_writes_an_empty_dataset_that_says_why(argilla, tmp_path):
    source = write_pairs(tmp_path / "pairs.jsonl", ["E1?", "E2?"])
    assert argilla.cli("push", str(source), "--dataset", "empty-pull", "--min-submitted", "2").returncode == 0
    out = tmp_path / "empty"
    pulled = argilla.cli("pull", "--dataset", "empty-pull", "--out", str(out))
    assert pulled.returncode == 0, pulled.stderr
    assert "0 preference pairs kept of 2 records" in pulled.stdout
    card = json.loads((out / "card.json").read_text())
    assert card["empty_reason"] == "no pair was kept of 2 records: 2 were dropped as not_annotated (nobody has answered them yet)"
    assert len(datasets.load_from_disk(str(out))) == 0
    # the same directory again: an earlier pull is replaced as a whole; --min-votes above what exists
    again = argilla.cli("pull", "--dataset", "empty-pull", "--out", str(out), "--min-votes", "5")
    assert again.returncode == 0 and json.loads((out / "card.json").read_text())["policy"]["min_votes"] == 5
    # a directory that is not an earlier pull is refused before anything is read
    model_dir = tmp_path / "a-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    refused = argilla.cli("pull", "--dataset", "empty-pull", "--out", str(model_dir))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert f"--out {model_dir} is not empty and is not an earlier pull" in refused.stderr
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json"]


def test_bad_names_values_and_nan_are_one_line_errors_before_anything_is_created(argilla, tmp_path):
    source = write_pairs(tmp_path / "pairs.jsonl", ["N1?"])
    for name, message in (("", "--dataset is empty"), ("x" * 300, "--dataset is 300 characters long; Argilla allows at most 200")):
        result = argilla.cli("push", str(source), "--dataset", name)
        assert result.returncode == 2 and result.stderr == f"error: {message}" + result.stderr.split(message, 1)[1]
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    bad_policy = argilla.cli("pull", "--dataset", "x", "--out", str(tmp_path / "o"), "--min-agreement", "1.5")
    assert bad_policy.returncode == 2
    assert bad_policy.stderr == "error: --min-agreement 1.5: must be between 0 and 1 (a share of the votes)\n"

    nan = tmp_path / "nan.jsonl"
    row = json.loads(source.read_text())
    nan.write_text(json.dumps(row)[:-1] + ', "metadata": {"source": "s", "score": NaN}}\n')
    result = argilla.cli("push", str(nan), "--dataset", "nan-check")
    assert result.returncode == 2 and f"{nan}:1: field 'metadata.score' is nan, which JSON cannot hold" in result.stderr
    assert lookup(argilla.client().datasets, name="nan-check", workspace=argilla.credentials["workspace"]) is None


def test_ctrl_c_during_push_says_what_was_sent_and_a_rerun_completes(argilla, tmp_path):
    # One record per request, and many of them: with the bulk-upload speedups a push of a few hundred
    # finished before the interrupt arrived on an idle machine.
    total = 3000
    source = write_pairs(tmp_path / "many.jsonl", [f"Interrupted question {i}?" for i in range(total)])
    argv = [sys.executable, "-m", "annotation", "push", str(source), "--dataset", "ctrl-c", "--batch-size", "1",
            "--data-dir", str(argilla.data_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARGILLA_")}
    push = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    with argilla.http() as http:
        while time.monotonic() < deadline and push.poll() is None:
            found = [d for d in http.get("/api/v1/me/datasets").json()["items"] if d["name"] == "ctrl-c"]
            if found and http.get(f"/api/v1/datasets/{found[0]['id']}/progress").json()["total"] >= 10:
                break
            time.sleep(0.2)
    push.send_signal(signal.SIGINT)
    _, stderr = push.communicate(timeout=60)
    assert push.returncode == 130, stderr
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("error: push interrupted: ") and f"of the {total} records to send were sent to annotation/ctrl-c" in message
    assert "Running the same push again is safe" in message
    with argilla.http() as http:
        arrived = http.get(f"/api/v1/datasets/{dataset_id(argilla, 'ctrl-c')}/progress").json()["total"]
    assert 10 <= arrived < total
    rerun = argilla.cli("push", str(source), "--dataset", "ctrl-c")
    assert rerun.returncode == 0 and f"created {total - arrived}, updated 0, unchanged {arrived}" in rerun.stdout
