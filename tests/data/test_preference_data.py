"""Preference data: TRL's four formats normalised, bad pairs named, length limits counted."""

import json

import pytest
from transformers import AutoTokenizer

from align.data.preference import build_preference_dataset, validate_preference_row
from align.data.sources import DataError, DataReport, Source

U = {"role": "user", "content": "What is the capital of France?"}
GOOD = {"role": "assistant", "content": "Paris."}
BAD = {"role": "assistant", "content": "Rome."}


def test_the_four_formats_come_out_with_an_explicit_prompt():
    explicit = validate_preference_row({"prompt": [U], "chosen": [GOOD], "rejected": [BAD]}, "x")
    implicit = validate_preference_row({"chosen": [U, GOOD], "rejected": [U, BAD]}, "x")
    assert explicit == implicit == {"prompt": [U], "chosen": [GOOD], "rejected": [BAD]}
    standard = validate_preference_row({"prompt": "Q: 2+2? A:", "chosen": " 4", "rejected": " 5"}, "x")
    assert standard == {"prompt": "Q: 2+2? A:", "chosen": " 4", "rejected": " 5"}
    implicit_text = validate_preference_row({"chosen": "Q: 2+2? A: 4", "rejected": "Q: 2+2? A: 5"}, "x")
    assert implicit_text == {"prompt": "Q: 2+2? A: ", "chosen": "4", "rejected": "5"}


def test_provenance_columns_of_an_annotation_pull_are_accepted():
    row = {"prompt": [U], "chosen": [GOOD], "rejected": [BAD], "annotators": ["a", "b"], "agreement": 1.0}
    assert validate_preference_row(row, "x")["chosen"] == [GOOD]


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"prompt": [U], "rejected": [BAD]}, "field 'chosen' is missing"),
        ({"prompt": [U], "chosen": [GOOD], "rejected": [{"role": "assistant", "content": " "}]},
         "field 'rejected[0].content' is empty"),
        ({"prompt": [U], "chosen": [GOOD], "rejected": [GOOD]}, "'chosen' and 'rejected' are identical"),
        ({"chosen": [U, GOOD], "rejected": [{"role": "user", "content": "Other?"}, BAD]},
         "fields 'chosen[0]' and 'rejected[0]' differ before the final answer"),
        ({"prompt": [U], "chosen": [U], "rejected": [BAD]}, "field 'chosen[0].role' must be 'assistant'"),
        ({"prompt": [GOOD], "chosen": [GOOD], "rejected": [BAD]}, "field 'prompt[0].role' is 'assistant' where 'user'"),
        ({"prompt": "Q", "chosen": [GOOD], "rejected": [BAD]}, "field 'prompt' is text where a list of messages was expected"),
        ({"prompt": [U], "chosen": "Paris.", "rejected": "Rome."}, "field 'prompt' must be text"),
        ({"prompt": "Q", "chosen": "", "rejected": "no"}, "field 'chosen' is empty"),
    ],
)
def test_bad_pairs_are_named_by_location_and_field(tmp_path, row, expected):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": [U], "chosen": [GOOD], "rejected": [BAD]}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError) as err:
        build_preference_dataset([Source(str(path))], None, None, None, DataReport())
    assert f"{path}:2: " in str(err.value) and expected in str(err.value)


def test_length_limits_drop_and_truncate_with_counts(tmp_path, tiny_klear_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_klear_dir)
    long_prompt = {"role": "user", "content": "word " * 120}
    long_answer = {"role": "assistant", "content": "yes " * 120}
    rows = [
        {"prompt": [U], "chosen": [GOOD], "rejected": [BAD]},
        {"prompt": [long_prompt], "chosen": [GOOD], "rejected": [BAD]},
        {"prompt": [U], "chosen": [long_answer], "rejected": [BAD]},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = DataReport()
    dataset = build_preference_dataset([Source(str(path))], tokenizer, 96, 64, report)
    assert len(dataset) == report.kept == 2
    assert report.dropped == {"prompt longer than max_prompt_length=64": 1}
    assert report.truncated == {"prompt + answer longer than max_length=96": 1}


def test_csv_pairs_are_read_and_a_bad_record_is_located_by_its_first_line(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text('prompt,chosen,rejected\n"Q: 2+2?\nA:", 4, 5\n"Q: 3+3? A:", 6, 7\n"Q: 1+1? A:",,3\n')
    with pytest.raises(DataError, match=rf"{path}:5: field 'chosen' is empty"):
        build_preference_dataset([Source(str(path))], None, None, None, DataReport())
    path.write_text('prompt,chosen,rejected\n"Q: 2+2?\nA:", 4, 5\n"Q: 3+3? A:", 6, 7\n')
    pairs = build_preference_dataset([Source(str(path))], None, None, None, DataReport())
    assert pairs[0] == {"prompt": "Q: 2+2?\nA:", "chosen": " 4", "rejected": " 5"} and len(pairs) == 2
