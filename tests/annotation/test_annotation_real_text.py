"""Real text: Anthropic HH-RLHF harmless-base pairs (long, multi-turn) pushed, annotated and pulled
back unchanged, on SQLite and PostgreSQL. The data is read from ../shared/data; absent, it skips."""

from __future__ import annotations

import functools
import json

import datasets
import pytest

from annotation.convert import read_pairs_to_reannotate, to_push_rows
from annotation.simulate import ScriptedAnnotator, submit_scripted_responses
from argilla_helpers import dataset_id
from tests.conftest import SHARED_DATA

HH = SHARED_DATA / "hh_rlhf" / "harmless-base-test.jsonl.gz"
SUBSET = 50

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not HH.exists(), reason=f"{HH} is absent (the shared data)")]


@functools.lru_cache(maxsize=1)
def hh_subset() -> tuple:
    """50 HH pairs: the longest, the one with the most turns, then the first ones, as push rows."""
    pairs = [row for _, row in read_pairs_to_reannotate(HH)[0]]
    longest = max(pairs, key=lambda row: len(json.dumps(row)))
    most_turns = max(pairs, key=lambda row: len(row["prompt"]))
    chosen = [longest, most_turns] + [row for row in pairs if row is not longest and row is not most_turns]
    rows, report = to_push_rows([("hh", row) for row in chosen], "hh-harmless-base", limit=SUBSET)
    assert report.written == SUBSET
    return tuple(rows)


def write_rows(path, rows) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def test_hh_pairs_round_trip_unchanged(argilla, annotators, tmp_path):
    rows = hh_subset()
    assert len(json.dumps(rows[0])) > 5_000 and max(len(row["prompt"]) for row in rows) >= 7  # long, multi-turn
    source = tmp_path / "hh.jsonl"
    write_rows(source, rows)
    pushed = argilla.cli("push", str(source), "--dataset", "hh-real")
    assert pushed.returncode == 0, pushed.stderr
    assert f"created {SUBSET}," in pushed.stdout

    by_prompt_id = {row["id"]: row for row in rows}
    with argilla.http() as http:
        records = http.get(f"/api/v1/datasets/{dataset_id(argilla, 'hh-real')}/records", params={"limit": 1000}).json()["items"]
    assert len(records) == SUBSET
    for record in records:
        row = by_prompt_id[record["metadata"]["prompt_id"]]
        assert record["fields"]["prompt"] == row["prompt"]  # every turn, byte for byte
        answers = {record["fields"]["answer_a"], record["fields"]["answer_b"]}
        assert answers == {completion["content"] for completion in row["completions"]}

    chosen_text = {row["completions"][0]["content"] for row in rows}

    def prefer_hh_chosen(pair):
        return "a" if pair.answer_a in chosen_text else "b"

    done = submit_scripted_responses(argilla.api_url, "hh-real", argilla.credentials["workspace"],
                                     [ScriptedAnnotator("ann1", annotators["ann1"], noise=0)], choose=prefer_hh_chosen)
    assert done == {"ann1": SUBSET}
    out = tmp_path / "hh-prefs"
    pulled = argilla.cli("pull", "--dataset", "hh-real", "--out", str(out))
    assert pulled.returncode == 0, pulled.stderr
    pulled_rows = {row["prompt_id"]: row for row in datasets.load_from_disk(str(out))}
    assert len(pulled_rows) == SUBSET
    for prompt_id, row in by_prompt_id.items():
        back = pulled_rows[prompt_id]
        assert back["prompt"] == row["prompt"]
        assert back["chosen"] == [{"role": "assistant", "content": row["completions"][0]["content"]}]
        assert back["rejected"] == [{"role": "assistant", "content": row["completions"][1]["content"]}]
        assert (back["chosen_model"], back["source"]) == ("chosen", "hh-harmless-base")
