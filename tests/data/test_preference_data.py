"""Preference data: TRL's four formats normalised, bad pairs named, length limits counted."""

import json

import pytest
from transformers import AutoTokenizer

from align.data.preference import UNMARKED_IN_HH_FILE, build_preference_dataset, validate_preference_row
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


def hh(question: str, answer: str) -> str:
    return f"\n\nHuman: {question}\n\nAssistant: {answer}"


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_an_hh_file_drops_and_names_its_rows_without_turn_markers(tmp_path):
    """Whichever line they are on: the file is HH because some rows are transcripts."""
    path = write_rows(tmp_path / "hh.jsonl", [
        {"chosen": "Paris is the capital.", "rejected": "Rome is the capital."},  # no markers, before any transcript
        {"chosen": hh("Capital of France?", "Paris."), "rejected": hh("Capital of France?", "Rome.")},
        {"chosen": "A plain text answer", "rejected": "Another plain text"},
        {"chosen": hh("Capital of Peru?", "Lima."), "rejected": hh("Capital of Peru?", "Quito.")},
    ])
    report = DataReport()
    pairs = build_preference_dataset([Source(str(path))], None, None, None, report)
    assert pairs["prompt"] == [[{"role": "user", "content": "Capital of France?"}],
                               [{"role": "user", "content": "Capital of Peru?"}]]
    assert report.dropped == {UNMARKED_IN_HH_FILE: 2}
    assert report.dropped_rows[UNMARKED_IN_HH_FILE] == [f"{path}:1", f"{path}:3"]
    card = report.as_dict()
    assert card["sources"][str(path)] == {"read": 4, "used": 2} and card["kept"] == 2
    assert f"dropped ({UNMARKED_IN_HH_FILE}): 2 (first: {path}:1, {path}:3)" in report.summary()


@pytest.mark.parametrize("layout", [
    lambda q, a: hh(q, a).strip(),                         # stripped: no blank line before the first speaker
    lambda q, a: f"\nHuman: {q}\nAssistant: {a}",          # one newline per turn
])
def test_a_file_of_damaged_hh_transcripts_stops_naming_the_file_and_the_layout_it_expected(tmp_path, layout):
    path = write_rows(tmp_path / "hh.jsonl", [
        {"chosen": layout("Capital of France?", "Paris."), "rejected": layout("Capital of France?", "Rome.")},
        {"chosen": layout("Capital of Peru?", "Lima."), "rejected": layout("Capital of Peru?", "Quito.")},
    ])
    with pytest.raises(DataError) as err:
        build_preference_dataset([Source(str(path))], None, None, None, DataReport())
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: does not look like HH transcripts: its texts name the speakers ({path}:1) "
                              "but no row starts with a turn marker; expected '\\n\\nHuman: ...\\n\\nAssistant: ...'")


def test_text_pairs_without_speakers_are_trls_implicit_prompt_and_the_card_says_so(tmp_path):
    path = write_rows(tmp_path / "pairs.jsonl", [{"chosen": "Q: 2+2? A: 4", "rejected": "Q: 2+2? A: 5"},
                                                 {"chosen": "Q: 3+3? A: 6", "rejected": "Q: 3+3? A: 7"}])
    report = DataReport()
    pairs = build_preference_dataset([Source(str(path))], None, None, None, report)
    assert pairs[1] == {"prompt": "Q: 3+3? A: ", "chosen": "6", "rejected": "7"} and not report.dropped
    assert report.as_dict()["notes"] == [f"{path}: no Human/Assistant turn markers, read as TRL's implicit-prompt "
                                         "format (the prompt is the text chosen and rejected share)"]
    # such a file still stops at a pair with no shared text, naming it
    write_rows(path, [{"chosen": "Q: 2+2? A: 4", "rejected": "Q: 2+2? A: 5"}, {"chosen": "yes", "rejected": "no"}])
    with pytest.raises(DataError, match=rf"^{path}:2: field 'prompt' is empty$"):
        build_preference_dataset([Source(str(path))], None, None, None, DataReport())


def test_a_row_of_another_format_in_an_hh_file_is_named_for_its_format(tmp_path):
    path = write_rows(tmp_path / "hh.jsonl", [
        {"chosen": hh("Capital of France?", "Paris."), "rejected": hh("Capital of France?", "Rome.")},
        {"prompt": "Capital of Peru?", "chosen": "Lima.", "rejected": "Quito."},
    ])
    with pytest.raises(DataError) as err:
        build_preference_dataset([Source(str(path))], None, None, None, DataReport())
    assert str(err.value) == (f"{path}:2: not an HH transcript pair (two texts, no 'prompt') but {path}:1 is one: "
                              "every row of a dataset and of a mixture must use one format")
