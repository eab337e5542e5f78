"""The report: Markdown and HTML with radar charts and the comparison with earlier runs,
the HTML rendered in a real browser (Debian's chromium through Playwright)."""

import json

import pytest

from align.judging.__main__ import main
from align.judging.config import JudgeConfig
from align.judging.judgments import JudgeRequest, judge_answers
from judging_support import write_fastchat_answers


def run_twice(tmp_path, scripted_judge):
    """Two finished runs in one directory; the second model got better on q81."""
    judge = JudgeConfig.from_mapping({"base_url": scripted_judge.base_url, "model": "scripted-judge"}, env={})
    out = tmp_path / "judge"
    for version, score in (("v1", 4), ("v2", 7)):
        answers = write_fastchat_answers(tmp_path / version / "sft.jsonl", {
            81: [f"{version} SCRIPTED_SCORE={score}", f"{version} SCRIPTED_SCORE={score}"],
            111: [f"{version} SCRIPTED_SCORE=6", f"{version} SCRIPTED_SCORE=6"],
        })
        report = judge_answers(out, JudgeRequest(mt_bench_answers=answers, question_ids=(81, 111), note=version), judge)
    return out, report


def test_markdown_report_compares_runs(tmp_path, scripted_judge):
    out, report = run_twice(tmp_path, scripted_judge)
    text = report.read_text()
    assert text.startswith("# Judge report: run ")
    assert "Question subset (question ids [81, 111])" in text
    assert "| sft | 6.50 |" in text  # (7 + 7 + 6 + 6) / 4
    assert "5.00" in text and "6.50 (+1.50)" in text  # history row of v1, then v2 with its change
    assert "| single-math-v1 | " in text and "scripted-judge" in text
    summary = json.loads((out / "summary.json").read_text())
    assert [h["headline"]["mt_bench"]["sft"] for h in summary["history"]] == [5.0, 6.5]
    assert summary["note"] == "v2"


def test_html_escapes_judge_text():
    from align.judging.report import render_html

    page = render_html([("pre", "judgment: '<script>x</script>'"), ("table", ["a|b"], [["<b>"]])], "t")
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt;" in page and "<td>&lt;b&gt;</td>" in page


def test_report_command_needs_a_finished_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no finished judge run" in capsys.readouterr().err


@pytest.mark.slow
def test_html_report_renders_in_chromium(tmp_path, scripted_judge):
    from playwright.sync_api import sync_playwright

    out, _ = run_twice(tmp_path, scripted_judge)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        try:
            page = browser.new_page()
            page.goto((out / "report.html").as_uri())
            assert page.locator("h1").inner_text().startswith("Judge report: run ")
            image = page.locator("img[src='radar_mt_bench.png']")
            assert image.evaluate("img => img.complete && img.naturalWidth") > 300
            first_table_row = page.locator("table").nth(1).locator("tbody tr").first.inner_text()
            assert first_table_row.split("\t")[:2] == ["sft", "6.50"]
            assert page.locator(".warn").first.inner_text().startswith("Warning: Question subset")
            history = page.locator("table").last.inner_text()
            assert "6.50 (+1.50)" in history
        finally:
            browser.close()
