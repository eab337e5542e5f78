"""push --judge (LLM-judge suggestions through align.judging.pairwise) and generate (through
align.judging.answers): the judge is the judging module's scripted judge, a real OpenAI-compatible
HTTP server process whose opinion is scripted; the generator is the random tiny Klear model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from argilla_helpers import dataset_id, records_by_prompt

from annotation.generate import PromptToAnswer, candidate_rows
from annotation.logic.pairs import parse_rows, read_input_rows
from annotation.simulate import ScriptedAnnotator, ShownPair, submit_scripted_responses

SCRIPTED_JUDGE = Path(__file__).resolve().parents[1] / "judging" / "scripted_judge.py"


@pytest.fixture
def scripted_judge(tmp_path):
    port_file = tmp_path / "judge-port"
    process = subprocess.Popen([sys.executable, str(SCRIPTED_JUDGE), "--port-file", str(port_file)])
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, "the scripted judge did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port_file.read_text()}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def choose_the_good_one_on_p1_only(pair: ShownPair) -> str:
    good_side = "a" if "GOOD" in pair.answer_a else "b"
    if pair.prompt[-1]["content"] == "J1?":
        return good_side
    return "b" if good_side == "a" else "a"


@pytest.mark.slow
def test_judge_suggestions_are_attached_mapped_and_compared(argilla, annotators, scripted_judge, tmp_path):
    rows = [
        {"id": f"j{i}", "prompt": f"J{i}?", "completions": [
            {"model": "model-good", "content": f"GOOD answer {i}. SCRIPTED_SCORE=9"},
            {"model": "model-weak", "content": f"weak answer {i}. SCRIPTED_SCORE=2"}]}
        for i in (1, 2)
    ]
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    judge_env = {"JUDGE_BASE_URL": scripted_judge, "JUDGE_MODEL": "scripted-judge", "JUDGE_API_KEY": "unused"}
    pushed = argilla.cli("push", str(source), "--dataset", "judge-check", "--judge", env=judge_env)
    assert pushed.returncode == 0, pushed.stderr
    assert "judge suggestions attached: 2 (no verdict: 0)" in pushed.stdout

    with argilla.http() as http:
        questions = http.get(f"/api/v1/datasets/{dataset_id(argilla, 'judge-check')}/questions").json()["items"]
    preference_id = next(q["id"] for q in questions if q["name"] == "preference")
    for prompt, record in records_by_prompt(argilla, "judge-check").items():
        (suggestion,) = record["suggestions"]
        good_side = "a" if "GOOD" in record["fields"]["answer_a"] else "b"
        assert suggestion["question_id"] == preference_id
        assert (suggestion["value"], suggestion["score"], suggestion["agent"]) == (good_side, 1.0, "scripted-judge")

    submit_scripted_responses(argilla.api_url, "judge-check", argilla.credentials["workspace"],
                              [ScriptedAnnotator("ann2", annotators["ann2"], noise=0)], choose=choose_the_good_one_on_p1_only)
    out = tmp_path / "prefs"
    assert argilla.cli("pull", "--dataset", "judge-check", "--out", str(out)).returncode == 0
    card = json.loads((out / "card.json").read_text())
    assert card["judge_human_agreement"]["compared"] == 2
    assert card["judge_human_agreement"]["accuracy"] == 0.5
    import datasets

    verdicts = {row["prompt_id"]: row["judge_verdict"] for row in datasets.load_from_disk(str(out))}
    assert verdicts == {"j1": "chosen", "j2": "rejected"}


def test_candidate_rows_drop_and_count_what_cannot_make_a_pair():
    prompts = [
        PromptToAnswer("x", [{"role": "user", "content": "x"}], {"source": "s"}),
        PromptToAnswer(None, [{"role": "user", "content": "y"}], {}),
        PromptToAnswer("z", [{"role": "user", "content": "z"}], {}),
    ]
    answers = {"m1": [["one", "two"], ["same", ""], ["", ""]], "m2": [["one", "three"], ["same", "same"], ["only", ""]]}
    rows, counts = candidate_rows(prompts, answers)
    assert rows == [{
        "id": "x", "prompt": [{"role": "user", "content": "x"}], "metadata": {"source": "s"},
        "completions": [{"model": "m1", "content": "one"}, {"model": "m1", "content": "two"}, {"model": "m2", "content": "three"}],
    }]
    assert counts == {"repeated_answers_dropped": 3, "empty_answers_dropped": 4,
                      "prompts_without_two_distinct_answers": 2, "prompts_written": 1}


@pytest.mark.slow
def test_generate_with_a_local_model_writes_push_input(tiny_klear_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"g{i}", "prompt": f"Question {i}?"}) + "\n" for i in range(3)))
    out = tmp_path / "candidates.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "annotation", "generate", str(prompts), "--out", str(out), "--model", str(tiny_klear_dir),
         "--samples", "3", "--temperature", "1.0", "--max-new-tokens", "8"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "of 3 prompts, 1 model(s) x 3 sample(s)" in result.stdout
    report = parse_rows(read_input_rows(out))  # push accepts what generate writes
    assert 1 <= len(report.rows) <= 3
    for row in report.rows:
        assert {c.model for c in row.completions} == {tiny_klear_dir.name}
        assert 2 <= len(row.completions) <= 3
