"""An annotator in the real web UI: Debian's chromium, driven by Playwright, on the real server.

Set UPDATE_DOCS_SCREENSHOT=1 to write the annotation page to docs/annotation-page.png as well
(the test itself always keeps one in its temporary directory).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import datasets
import pytest
from argilla_helpers import records_by_prompt
from test_annotation_real_text import HH, hh_subset, write_rows

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "annotation-page.png"

PROMPT = "In two sentences: what does DPO optimise?"
GOOD = (
    "DPO raises the log-likelihood of the **chosen** answer relative to the **rejected** one, "
    "measured against a frozen reference model.\n\nIt needs no separate reward model: the "
    "preference pairs themselves act as the reward signal."
)
WEAK = "DPO is an optimiser, like Adam, that makes training faster."


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (scripts/install-system-deps.sh)")
def test_annotator_chooses_in_the_browser_and_pull_maps_it_back(argilla, annotators, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    source = tmp_path / "pair.jsonl"
    row = {
        "id": "dpo-question",
        "prompt": PROMPT,
        "completions": [{"model": "klear-sft", "content": GOOD}, {"model": "tiny-random", "content": WEAK}],
        "metadata": {"source": "browser-test", "category": "ml"},
    }
    source.write_text(json.dumps(row) + "\n")
    assert argilla.cli("push", str(source), "--dataset", "browser-check").returncode == 0
    record = records_by_prompt(argilla, "browser-check")[PROMPT]
    good_side = "A" if record["fields"]["answer_a"] == GOOD else "B"
    hh_longest = hh_subset()[0] if HH.exists() else None  # real text: the longest HH harmless-base pair
    if hh_longest:
        write_rows(tmp_path / "hh.jsonl", [hh_longest])
        assert argilla.cli("push", str(tmp_path / "hh.jsonl"), "--dataset", "hh-browser").returncode == 0

    screenshot = tmp_path / "annotation-page.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"{argilla.api_url}/sign-in")
            page.get_by_label("Username").fill("ann1")
            page.get_by_label("Password").fill(annotators["ann1"])
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("browser-check", exact=True).click()

            expect(page.get_by_text(PROMPT)).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Answer A", exact=True)).to_be_visible()
            expect(page.get_by_text("Answer B", exact=True)).to_be_visible()
            expect(page.get_by_text("the preference pairs themselves act as the reward signal")).to_be_visible()
            expect(page.get_by_text(WEAK)).to_be_visible()

            page.get_by_role("textbox").click()  # a content-editable span: typed into, not filled
            page.keyboard.type("It explains the objective; the other answer confuses DPO with an optimiser.")
            page.get_by_text(f"{good_side} is better", exact=True).click()
            page.screenshot(path=str(screenshot))
            page.get_by_role("button", name=re.compile("Submit")).click()
            _wait_for_response(argilla, "ann1")

            if hh_longest:  # a long multi-turn conversation renders: every turn and both long answers
                page.goto(f"{argilla.api_url}/")
                page.get_by_text("hh-browser", exact=True).click()
                texts = [m["content"] for m in hh_longest["prompt"]] + [c["content"] for c in hh_longest["completions"]]
                for text in texts:
                    expect(page.get_by_text(" ".join(text.split()[:8])).first).to_be_visible(timeout=30_000)
        finally:
            browser.close()
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)

    out = tmp_path / "prefs"
    assert argilla.cli("pull", "--dataset", "browser-check", "--out", str(out)).returncode == 0
    rows = list(datasets.load_from_disk(str(out)))
    assert len(rows) == 1
    assert rows[0]["prompt"] == [{"role": "user", "content": PROMPT}]
    assert rows[0]["chosen"] == [{"role": "assistant", "content": GOOD}]
    assert rows[0]["rejected"] == [{"role": "assistant", "content": WEAK}]
    assert (rows[0]["chosen_model"], rows[0]["rejected_model"]) == ("klear-sft", "tiny-random")
    assert rows[0]["chosen_was_shown_as"] == good_side and rows[0]["annotators"] == ["ann1"]
    assert rows[0]["rationales"] == ["It explains the objective; the other answer confuses DPO with an optimiser."]
    assert json.loads((out / "card.json").read_text())["scripted_responses"] == 0


def _wait_for_response(argilla, username: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        responses = records_by_prompt(argilla, "browser-check")[PROMPT]["responses"]
        if any(r["status"] == "submitted" for r in responses):
            return
        time.sleep(0.5)
    raise AssertionError(f"no submitted response from {username} reached the server")
