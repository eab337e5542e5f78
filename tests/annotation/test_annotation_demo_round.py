"""The annotation leg of `make demo` in one call, on a server of its own."""

import json

import datasets
import pytest

from annotation.demo import scripted_annotation_round

pytestmark = pytest.mark.slow


def test_scripted_annotation_round_writes_dpo_input(tmp_path):
    rows = [
        {"id": f"d{i}", "prompt": f"Demo question {i}?", "completions": [
            {"model": "long-winded", "content": f"A long and detailed answer to question {i}, with reasons."},
            {"model": "terse", "content": f"Short {i}."}]}
        for i in range(4)
    ]
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "preferences"
    card = scripted_annotation_round(source, out, data_dir=tmp_path / "argilla", annotators=2, noise=0.0, log=lambda m: None)
    # two scripted annotators, no noise, the rule "the longer answer wins": full agreement
    assert card["counts"] == {"records": 4, "kept": 4, "dropped": 0}
    assert card["responses"]["submitted"] == 8 and card["scripted_responses"] == 8 and "warning" in card
    assert card["agreement"]["percent_agreement"] == 1.0
    for row in datasets.load_from_disk(str(out)):
        assert row["chosen_model"] == "long-winded" and row["votes"] == 2
        assert row["chosen"][0]["role"] == "assistant" and row["prompt"][-1]["role"] == "user"
