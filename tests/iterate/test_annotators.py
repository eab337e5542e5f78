"""The `annotators` scorer against a real Argilla (`python -m annotation serve`, SQLite): the round's pairs
are pushed with the recipe's gold pairs and the run stops in one line until they are annotated; SCRIPTED
stand-ins (the function behind `python -m annotation scripted-annotators`) submit through Argilla's API; the
same command then pulls the consensus and trains on the round's pairs only: the gold pairs are counted, not
trained on."""

import json

import pytest

from align.common.ports import free_loopback_port
from align.iterate.scorers import AwaitingAnnotations
from annotation.simulate import ScriptedAnnotator, submit_scripted_responses
from annotation.users import add_user
from tests.annotation.argilla_helpers import ServeProcess
from tests.conftest import sometimes_prompt
from tests.iterate.support import run_iterate, write_prompts

pytestmark = pytest.mark.slow


def prefer_paris(pair) -> str:
    """The scripted annotators' rule: the answer naming Paris wins; both or neither: a tie."""
    a, b = "Paris" in pair.answer_a, "Paris" in pair.answer_b
    return "tie" if a == b else "a" if a else "b"


@pytest.fixture(scope="module")
def argilla_sqlite(tmp_path_factory):
    server = ServeProcess(tmp_path_factory.mktemp("iterate-argilla") / "data", free_loopback_port(), database="sqlite")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_the_annotators_consensus_is_what_the_round_trains_on(tmp_path, sometimes_answer_sft_dir, argilla_sqlite,
                                                              monkeypatch):
    for name in ("ARGILLA_API_URL", "ARGILLA_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    workspace = argilla_sqlite.credentials["workspace"]
    annotator = ScriptedAnnotator("iterate-annotator", "iterate-annotator-password", noise=0.0)
    add_user(argilla_sqlite.client(), annotator.username, annotator.password, "annotator", workspace)
    prompts = write_prompts(tmp_path / "prompts.jsonl", [sometimes_prompt(n) for n in range(8)])
    gold = tmp_path / "gold.jsonl"  # `annotation push`'s rows; the answer naming Paris is the known better one
    gold.write_text("".join(json.dumps(
        {"id": f"gold-{n}", "prompt": f"Gold question {n}: which city is the capital of France?", "gold": "right",
         "completions": [{"model": "right", "content": f"Paris, gold {n}."},
                         {"model": "wrong", "content": f"Lyon, gold {n}."}]}) + "\n" for n in range(2)))
    out = tmp_path / "run"
    settings = {"data_dir": str(argilla_sqlite.data_dir), "workspace": workspace, "min_submitted": 1, "wait_s": 0,
                "gold_pairs": str(gold)}
    command = [out, sometimes_answer_sft_dir, prompts, "--scorer", "annotators", "--annotators", json.dumps(settings),
               "--rounds", "1", "--prompts_per_round", "8", "--max_steps", "2"]
    with pytest.raises(AwaitingAnnotations) as waiting:
        run_iterate(*command)
    message = str(waiting.value)
    assert message.startswith("round 1: dataset ") and "iterate-round-1: 0 of " in message
    assert "run the same command again to resume" in message and "\n" not in message
    assert set(json.loads((out / "round-1/phases.json").read_text())) == {"sampled"}
    assert not (out / "round-1/dpo").exists()

    submitted = submit_scripted_responses(argilla_sqlite.api_url, "iterate-round-1", workspace, [annotator],
                                          choose=prefer_paris)
    samples = [json.loads(line) for line in (out / "round-1/samples.jsonl").read_text().splitlines()]
    shown = [list(dict.fromkeys(s["text"] for s in row["samples"]))[:2] for row in samples]
    shown = [texts for texts in shown if len(texts) == 2]
    assert submitted == {annotator.username: len(shown) + 2}  # the round's pairs and the 2 gold pairs

    summaries = run_iterate(*command)  # the same command: pulls the consensus and trains
    pairs = [json.loads(line) for line in (out / "round-1/pairs.jsonl").read_text().splitlines()]
    decided = [texts for texts in shown if ("Paris" in texts[0]) != ("Paris" in texts[1])]
    assert pairs and len(pairs) == len(decided) == summaries[0]["pairs"]
    assert {p["prompt_id"] for p in pairs} <= {str(row["prompt_id"]) for row in samples}  # no gold pair trained on
    assert not any("Gold question" in json.dumps(p["prompt"]) for p in pairs)
    scoring = json.loads((out / "round-1/scoring.json").read_text())
    assert scoring["gold_pairs_pushed"] == scoring["gold_pairs_pulled"] == 2
    assert scoring["round_pairs_pushed"] == len(shown) and scoring["pushed"] == len(shown) + 2
    assert scoring["flagged_annotators"] == []  # the annotator got the gold pairs right
    assert all("Paris" in p["chosen"][0]["content"] and "Paris" not in p["rejected"][0]["content"] for p in pairs)
    assert sum(summaries[0]["dropped"].values()) >= len(shown) - len(decided)  # the ties are counted, not trained
    assert (out / "round-1/annotations").is_dir()
    assert summaries[0]["dpo"]["global_steps"] == 2
