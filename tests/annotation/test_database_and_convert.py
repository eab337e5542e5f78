"""Which database a data directory uses (pure), and preference rows -> push input (HH transcripts
and TRL rows), on hand-made values."""

from __future__ import annotations

import gzip
import json

import pytest

from align.data.preference import UNMARKED_IN_HH_FILE, UNPARSEABLE_TRANSCRIPT
from align.data.transcripts import TRANSCRIPT_LAYOUT
from annotation.connection import write_private_json
from annotation.convert import NO_PAIR, convert_file, read_pairs_to_reannotate, to_push_rows
from annotation.errors import AnnotationError
from annotation.logic.pairs import make_pairs, parse_rows, read_input_rows
from annotation.server.lifecycle import ServeConfig, server_environment
from annotation.server.postgres import DatabaseChoice, asyncpg_url, choose_database, record_database, redact_url


def test_a_new_directory_gets_what_is_asked_and_sqlite_by_default(tmp_path):
    assert choose_database(tmp_path, None, None) == DatabaseChoice("sqlite")
    assert choose_database(tmp_path, "postgresql", None) == DatabaseChoice("postgresql")
    url = choose_database(tmp_path, None, "postgres://u:secret@db:5432/argilla")
    assert url == DatabaseChoice("postgresql-url", "postgresql+asyncpg://u:secret@db:5432/argilla")
    with pytest.raises(AnnotationError, match="contradict"):
        choose_database(tmp_path, "sqlite", "postgresql://u:p@h/d")
    with pytest.raises(AnnotationError, match="is not a PostgreSQL URL"):
        choose_database(tmp_path, None, "mysql://u:p@h/d")


def test_a_directory_keeps_its_database(tmp_path):
    record_database(tmp_path, DatabaseChoice("postgresql"))
    assert choose_database(tmp_path, None, None) == DatabaseChoice("postgresql")
    with pytest.raises(AnnotationError) as error:
        choose_database(tmp_path, "sqlite", None)
    assert str(error.value) == (
        f"{tmp_path} holds an Argilla on PostgreSQL (a local cluster in the data directory); start it the same way "
        "(--database postgresql or no database option), or use a new --data-dir for SQLite"
    )
    old = tmp_path / "old"  # made before the choice was recorded: SQLite
    old.mkdir()
    write_private_json(old / "credentials.json", {})
    assert choose_database(old, None, None) == DatabaseChoice("sqlite")
    with pytest.raises(AnnotationError, match="holds an Argilla on SQLite"):
        choose_database(old, "postgresql", None)


def test_urls_are_redacted_and_reach_the_server_processes(tmp_path):
    assert redact_url("postgresql+asyncpg://argilla:s3cr3t@127.0.0.1:5432/argilla") == (
        "postgresql+asyncpg://argilla:***@127.0.0.1:5432/argilla")
    assert asyncpg_url("postgresql+psycopg2://u:p@h/d") == "postgresql+asyncpg://u:p@h/d"
    env = server_environment(ServeConfig(data_dir=tmp_path), "redis://x", tmp_path, {}, "postgresql+asyncpg://u:p@h/d")
    assert env["ARGILLA_DATABASE_URL"] == "postgresql+asyncpg://u:p@h/d"


def test_an_hh_row_gives_annotation_the_turns_training_reads(tmp_path):
    """One parser per format: `from-preferences` (push input) and align.data's preference reading
    cut the same HH rows into the same turns, whitespace stripped, and refuse the same rows, located."""
    from align.data.preference import read_preference_rows
    from align.data.sources import DataReport, Source

    good = {"chosen": "\n\nHuman: Hi there \n\nAssistant: Hello!\n\n\nHuman: A question.\n\nAssistant: An answer\n",
            "rejected": "\n\nHuman: Hi there \n\nAssistant: Hello!\n\n\nHuman: A question.\n\nAssistant: Other\n\n"}
    two_humans = {"chosen": "\n\nHuman: One\n\nHuman: Two\n\nAssistant: yes", "rejected": "\n\nHuman: One\n\nHuman: Two\n\nAssistant: no"}
    source = tmp_path / "hh.jsonl"
    source.write_text(json.dumps(good) + "\n" + json.dumps(two_humans) + "\n")
    expected_prompt = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
                       {"role": "user", "content": "A question."}]  # by hand: the text between markers, stripped

    annotation_rows, annotation_report = read_pairs_to_reannotate(source)
    report = DataReport()
    training = read_preference_rows([Source(str(source))], report)
    assert annotation_rows == [(f"{source}:1", {"prompt": expected_prompt, "chosen": [{"role": "assistant", "content": "An answer"}],
                                                "rejected": [{"role": "assistant", "content": "Other"}]})]
    assert len(training) == 1 and training[0]["prompt"] == expected_prompt
    assert (training[0]["chosen"], training[0]["rejected"]) == (annotation_rows[0][1]["chosen"], annotation_rows[0][1]["rejected"])
    # both drop the same row for the same reason and name it
    assert annotation_report.data.dropped_rows == report.dropped_rows
    [refusal] = report.dropped_rows[UNPARSEABLE_TRANSCRIPT]
    assert refusal.startswith(f"{source}:2") and "turn 2 is Human" in refusal


def write_jsonl_gz(path, rows) -> None:
    with gzip.open(path, "wt") as handle:
        handle.write("".join(json.dumps(row) + "\n" for row in rows))


def test_preference_files_become_push_input_with_everything_counted(tmp_path):
    hh = tmp_path / "hh.jsonl.gz"
    write_jsonl_gz(hh, [
        {"chosen": "\n\nHuman: Q1\n\nAssistant: good 1", "rejected": "\n\nHuman: Q1\n\nAssistant: bad 1"},
        {"chosen": "\n\nHuman: Q1\n\nAssistant: good 1b", "rejected": "\n\nHuman: Q1\n\nAssistant: bad 1b"},  # same prompt
        {"chosen": "\n\nHuman: Q2\n\nAssistant: A\n\nHuman: more\n\nAssistant: good 2",
         "rejected": "\n\nHuman: Q2\n\nAssistant: B"},  # the sides diverge before the last answer
        {"chosen": "\n\nHuman: Q3\n\nAssistant: same", "rejected": "\n\nHuman: Q3\n\nAssistant: same"},
        {"chosen": "Q4 without markers: good", "rejected": "Q4 without markers: bad"},  # in an HH file: no transcript
        {"chosen": "\n\nHuman: Q5\n\nAssistant: good 5", "rejected": "\n\nHuman: Q5\n\nAssistant: bad 5"},
    ])
    out = tmp_path / "pairs.jsonl"
    report = convert_file(hh, out, gold=1, seed=0)
    assert (report.read, report.written, report.gold) == (6, 2, 1)
    assert (report.duplicate_prompts_skipped, report.not_a_pair_skipped) == (1, 3)
    assert report.data.dropped_rows == {
        UNPARSEABLE_TRANSCRIPT: [f"{hh}:3 (fields 'chosen' and 'rejected' differ before their last Assistant turn)"],
        NO_PAIR: [f"{hh}:4: fields 'chosen' and 'rejected' hold the same answer"],
        UNMARKED_IN_HH_FILE: [f"{hh}:5"],
    }
    line = report.line(hh, out)
    assert f"  skipped ({UNMARKED_IN_HH_FILE}): 1 (first: {hh}:5)" in line.splitlines()
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["prompt"] for row in written] == [[{"role": "user", "content": q}] for q in ("Q1", "Q5")]
    assert written[0]["completions"] == [{"model": "chosen", "content": "good 1"}, {"model": "rejected", "content": "bad 1"}]
    assert sum(row.get("gold") == "chosen" for row in written) == 1 and written[0]["metadata"] == {"source": "hh"}
    pairs, _ = make_pairs(parse_rows(read_input_rows(out)).rows)  # push accepts it as it is
    assert len(pairs) == 2

    trl = tmp_path / "trl.jsonl.gz"  # TRL's explicit-prompt rows, text and messages, become the same messages
    write_jsonl_gz(trl, [{"prompt": [{"role": "user", "content": "Q6"}], "chosen": [{"role": "assistant", "content": "good 6"}],
                          "rejected": [{"role": "assistant", "content": "bad 6"}]},
                         {"prompt": "Q7", "chosen": "good 7", "rejected": "bad 7"}])
    report = convert_file(trl, out)
    assert (report.read, report.written, report.not_a_pair_skipped) == (2, 2, 0)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["prompt"] for row in written] == [[{"role": "user", "content": q}] for q in ("Q6", "Q7")]
    with pytest.raises(AnnotationError, match="--gold 4: only 3 pairs were converted"):
        to_push_rows([(f"x:{i}", row) for i, row in enumerate(
            {"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": [{"role": "assistant", "content": "y"}],
             "rejected": [{"role": "assistant", "content": "n"}]} for i in range(3))], "x", gold=4)


def test_a_file_of_damaged_hh_markers_stops_the_conversion_in_one_line(tmp_path):
    """Speakers named but never in HH's layout (markers stripped to one newline): training's reader refuses
    the file as a whole, and so does from-preferences, naming the layout it expected; nothing is written."""
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text("".join(json.dumps({"chosen": f"Human: Q{i}\nAssistant: good", "rejected": f"Human: Q{i}\nAssistant: bad"})
                               + "\n" for i in range(3)))
    out = tmp_path / "pairs.jsonl"
    with pytest.raises(AnnotationError) as error:
        convert_file(damaged, out)
    assert str(error.value) == (f"{damaged}: does not look like HH transcripts: its texts name the speakers ({damaged}:1) "
                                f"but no row starts with a turn marker; expected {TRANSCRIPT_LAYOUT}")
    assert not out.exists()
