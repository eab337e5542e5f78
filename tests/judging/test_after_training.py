"""The training hook: answer, judge, report, with a configured judge and with none."""

import json

import pytest

from align.judging.config import JudgeConfigError
from align.judging.after_training import LOCAL_JUDGE_WARNING, check_judge_config, judge_after_training


def test_bad_or_disabled_config(tmp_path, monkeypatch):
    for name in ("JUDGE_BASE_URL", "JUDGE_MODEL", "OPENAI_BASE_URL", "JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="unknown key"):
        judge_after_training(tmp_path, tmp_path, {"benchmark": ["mt_bench"]})
    with pytest.raises(ValueError, match="unknown benchmark"):
        check_judge_config({"benchmarks": ["mtbench"]})
    with pytest.raises(ValueError, match="baseline_answers"):
        check_judge_config({"mode": "pairwise"})
    with pytest.raises(JudgeConfigError, match="JUDGE_MODEL"):
        check_judge_config({"base_url": "http://127.0.0.1:1/v1"})
    assert "meaningless" in check_judge_config(None)
    assert check_judge_config({"base_url": "http://127.0.0.1:1/v1", "model": "m"}) == "judge m at http://127.0.0.1:1/v1"
    assert judge_after_training(tmp_path, tmp_path, {"enabled": False}) is None
    assert judge_after_training(tmp_path, tmp_path, '{"enabled": false}') is None  # JSON from a command line
    with pytest.raises(ValueError, match="not a JSON object"):
        check_judge_config("{enabled: no}")


def test_with_a_configured_judge(tiny_klear_dir, tmp_path, scripted_judge, monkeypatch):
    monkeypatch.delenv("JUDGE_BASE_URL", raising=False)
    config = {"benchmarks": ["mt_bench"], "questions_per_category": 1, "max_new_tokens": 6,
              "base_url": scripted_judge.base_url, "model": "scripted-judge", "model_name": "sft-tiny"}
    report = judge_after_training(tiny_klear_dir, tmp_path / "judge", config)
    assert report == tmp_path / "judge" / "report.md"
    summary = json.loads((tmp_path / "judge" / "summary.json").read_text())
    assert summary["benchmarks"]["mt_bench"]["sft-tiny"]["n_items"] == 16
    assert summary["warning"] is None and summary["subset"] == {"questions_per_category": 1}
    assert (tmp_path / "judge" / "answers" / "mt_bench" / "sft-tiny.jsonl").is_file()


@pytest.mark.slow
def test_without_a_judge_it_serves_the_model_locally_and_says_the_scores_mean_nothing(tiny_klear_dir, tmp_path, monkeypatch):
    for name in ("JUDGE_BASE_URL", "OPENAI_BASE_URL", "JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    config = {"benchmarks": ["mt_bench"], "questions_per_category": 1, "max_new_tokens": 6, "max_tokens": 4}
    report = judge_after_training(tiny_klear_dir, tmp_path / "judge", config)
    assert report is not None
    text = report.read_text()
    assert text.splitlines()[2].startswith("> **Warning:** No judge endpoint was configured")
    assert "These scores mean nothing" in text and "These scores mean nothing" in LOCAL_JUDGE_WARNING
    summary = json.loads((tmp_path / "judge" / "summary.json").read_text())
    assert summary["warning"] == LOCAL_JUDGE_WARNING
    assert summary["judge"]["base_url"].startswith("http://127.0.0.1:")
    assert summary["counts"]["judgments"] == 16 and summary["counts"]["api_calls"] == 16
    assert (tmp_path / "judge" / "local_judge_server.log").is_file()
