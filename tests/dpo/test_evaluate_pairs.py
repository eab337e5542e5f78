"""`align.dpo.evaluate` reads held-out pairs as `align.dpo` trains on them: HH transcripts are decided per
file (a marker-less row among HH rows is dropped, counted and reported; a file of damaged markers stops in
one line before any model is loaded)."""

import json

import pytest

from align.data.preference import UNMARKED_IN_HH_FILE
from align.data.sources import DataReport
from align.data.transcripts import TRANSCRIPT_LAYOUT
from align.dpo.evaluate import load_pairs, main


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_a_row_without_markers_in_an_hh_file_is_dropped_counted_and_reported(tmp_path, tiny_klear_dir, capsys):
    held_out = tmp_path / "held_out.jsonl"
    write_jsonl(held_out, [
        {"chosen": "\n\nHuman: Name a colour.\n\nAssistant: Blue.", "rejected": "\n\nHuman: Name a colour.\n\nAssistant: No."},
        {"chosen": "Name a number. Seven.", "rejected": "Name a number. Never."},  # the markers lost
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."},
    ])
    report = DataReport()
    pairs = load_pairs(str(held_out), report)
    assert pairs == [  # by hand: the last Assistant turn is the answer, the turns before it the prompt
        {"prompt": [{"role": "user", "content": "Name a colour."}], "chosen": [{"role": "assistant", "content": "Blue."}],
         "rejected": [{"role": "assistant", "content": "No."}]},
        {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello!"}],
         "rejected": [{"role": "assistant", "content": "Go away."}]},
    ]
    assert (report.dropped, report.dropped_rows) == ({UNMARKED_IN_HH_FILE: 1}, {UNMARKED_IN_HH_FILE: [f"{held_out}:2"]})

    main(["--policy", str(tiny_klear_dir), "--reference", str(tiny_klear_dir), "--data", str(held_out)])
    out = capsys.readouterr().out
    assert f"  dropped ({UNMARKED_IN_HH_FILE}): 1 (first: {held_out}:2)" in out.splitlines()
    assert json.loads(out[out.index("{"):])["pairs"] == 2


def test_a_file_of_damaged_markers_or_a_missing_model_stops_in_one_line_before_any_model_loads(tmp_path):
    damaged = tmp_path / "damaged.jsonl"
    write_jsonl(damaged, [{"chosen": f"Human: Q{i}\nAssistant: yes", "rejected": f"Human: Q{i}\nAssistant: no"} for i in range(2)])
    with pytest.raises(SystemExit) as stop:
        main(["--policy", str(tmp_path), "--reference", str(tmp_path), "--data", str(damaged)])  # no model loads
    assert stop.value.code == (f"align.dpo.evaluate: {damaged}: does not look like HH transcripts: its texts name the "
                               f"speakers ({damaged}:1) but no row starts with a turn marker; expected {TRANSCRIPT_LAYOUT}")
    with pytest.raises(SystemExit) as stop:  # was transformers' OSError traceback ("Repo id must be in the form")
        main(["--policy", str(tmp_path / "absent"), "--reference", str(tmp_path), "--data", str(damaged)])
    assert stop.value.code == (f"align.dpo.evaluate: --policy '{tmp_path / 'absent'}': no such file or directory "
                               "(it looks like a local path, so the Hub is not asked)")
