"""import-fastchat: FastChat's model_judgment/<judge>_single.jsonl and _pair.jsonl -> summary.json and report
(real files: test_real_judgments.py)."""

import json

import pytest

from align.judging.__main__ import main
from align.data.benchmarks import DataError, load_mt_bench
from align.judging.fastchat_import import convert_fastchat_pair_rows, convert_fastchat_rows


def fastchat_row(model, qid, turn, score, judgment=None, template="single-v1"):
    return {"question_id": qid, "model": model, "judge": ["gpt-4", template],
            "user_prompt": "...", "judgment": judgment or f"Fine. Rating: [[{score}]]", "score": score,
            "turn": turn, "tstamp": 1687221890.0}


ROWS = [
    fastchat_row("vicuna", 81, 1, 9), fastchat_row("vicuna", 81, 2, 7, template="single-v1-multi-turn"),
    fastchat_row("vicuna", 111, 1, 3, template="single-math-v1"),
    fastchat_row("vicuna", 111, 2, -1, "I cannot rate this.", template="single-math-v1-multi-turn"),
    # FastChat read the citation [1] as the rating: kept (to match FastChat's numbers), flagged
    fastchat_row("vicuna", 91, 1, 1, "Good, see [1]. I'd say 8."),
    fastchat_row("llama", 81, 1, 2), fastchat_row("llama", 81, 2, 1, template="single-v1-multi-turn"),
]


def test_fastchat_numbers_are_reproduced_and_failures_counted(tmp_path, capsys):
    source = tmp_path / "gpt-4_single.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    out = tmp_path / "judge"
    # the command line's main() (`python -m align.judging` itself runs in test_resume.py)
    assert main(["import-fastchat", str(source), "--out", str(out)]) == 0
    assert "report.md" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    vicuna = summary["benchmarks"]["mt_bench"]["vicuna"]
    # FastChat show_result: -1 dropped; turn 1 (9 + 3 + 1) / 3; turn 2 7; average (9 + 7 + 3 + 1) / 4 = 5
    assert (vicuna["turn_1"], vicuna["turn_2"], vicuna["overall"]) == (round(13 / 3, 4), 7.0, 5.0)
    assert vicuna["per_category"] == {"math": 3.0, "roleplay": 1.0, "writing": 8.0}
    assert vicuna["items_without_score"] == 1
    assert summary["benchmarks"]["mt_bench"]["llama"]["overall"] == 1.5
    assert summary["counts"]["strict_parser_rejects"] == 1 and summary["counts"]["fastchat_rows"] == 7
    assert summary["judge"]["model"] == "gpt-4" and "imported from FastChat" in summary["source"]
    assert (out / "report.html").is_file() and (out / "radar_mt_bench.png").is_file()

    # `report DIR` rebuilds the same summary from the stored rows
    (out / "summary.json").unlink()
    assert main(["report", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["benchmarks"] == summary["benchmarks"]


def test_bad_rows_name_the_file_line_and_field(tmp_path):
    bench = load_mt_bench()
    source = tmp_path / "judgments.jsonl"
    with pytest.raises(DataError, match=r"judgments.jsonl:2: field 'score' must be a number"):
        convert_fastchat_rows([fastchat_row("m", 81, 1, 5), {**fastchat_row("m", 81, 2, 5), "score": "8"}], source, bench)
    with pytest.raises(DataError, match=r"judgments.jsonl:1: field 'question_id' 7 is not an MT-Bench question"):
        convert_fastchat_rows([fastchat_row("m", 7, 1, 5)], source, bench)
    with pytest.raises(DataError, match=r"judgments.jsonl:1: a pairwise judgment"):
        convert_fastchat_rows([{**fastchat_row("m", 81, 1, 5), "model_1": "a"}], source, bench)
    source.write_text('{"question_id": 81}\n')
    assert main(["import-fastchat", str(source), "--out", str(tmp_path / "out")]) == 2


def test_bad_pair_rows_name_the_file_line_and_field(tmp_path):
    bench = load_mt_bench()
    source = tmp_path / "gpt-4_pair.jsonl"
    good = {"question_id": 81, "model_1": "a", "model_2": "b", "g1_winner": "model_1", "g2_winner": "tie",
            "judge": ["gpt-4", "pair-v2"], "g1_judgment": "[[A]]", "g2_judgment": "[[C]]", "turn": 1}
    rows, counts = convert_fastchat_pair_rows([good], source, bench)
    assert [(r["game"], r["verdict"], r["baseline"], r["pairing"]) for r in rows] == [(1, "model", "b", "baseline"),
                                                                                       (2, "tie", "b", "baseline")]
    with pytest.raises(DataError, match=r"gpt-4_pair.jsonl:2: field 'g2_winner' must be one of"):
        convert_fastchat_pair_rows([good, {**good, "g2_winner": "model_3"}], source, bench)
    with pytest.raises(DataError, match=r"gpt-4_pair.jsonl:1: a pair graded by a single-answer judge"):
        convert_fastchat_pair_rows([{**good, "m1_score": 8}], source, bench)
