"""`python -m align.data.contamination`: a report path that is a directory, and an input with no rows,
each one line on stderr, exit 2, and no report written."""

import json

from align.data.contamination import main
from tests.data.test_contamination import needs_shared


def one_chat_row(path):
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}) + "\n")
    return path


@needs_shared
def test_a_report_path_that_is_a_directory_is_refused_before_scanning(tmp_path, capsys):
    data = one_chat_row(tmp_path / "c.jsonl")
    assert main([str(data), "--against", "mt_bench", "--report", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: --report {tmp_path} is a directory; name the JSON file to write\n"
    assert captured.out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]


@needs_shared
def test_an_empty_input_says_no_rows_were_read_and_writes_no_report(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    report = tmp_path / "report.json"
    assert main([str(empty), "--against", "mt_bench", "--report", str(report)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: no rows were read from {empty}: nothing was checked (no report written)\n"
    assert captured.out == "" and not report.exists()
