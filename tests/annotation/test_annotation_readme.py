"""The README's annotation commands, run as written (in a fresh directory): demo data, pairs from
preference rows with gold pairs, `serve --detach`, a user, push, status, the scripted annotators
(issue #18 item 19), pull (a non-empty dataset in TRL's preference format, marked as scripted),
`stop`. Also the refusals of a second serve and of a stop where nothing runs."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import datasets
import pytest

from align.common.ports import port_in_use
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def readme_annotation_commands() -> list:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("### Annotation (Argilla)", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def run(command: str, cwd) -> subprocess.CompletedProcess:
    argv = shlex.split(command)
    assert argv[0] == "python", command
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARGILLA_")}
    return subprocess.run([sys.executable, *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(port_in_use("127.0.0.1", 6900), reason="port 6900 (the README's default) is taken on this machine")
def test_readme_annotation_commands_run_as_written(tmp_path):
    commands = readme_annotation_commands()
    assert commands[0].startswith("python -m align.data.demo") and commands[-1].startswith("python -m annotation stop")
    data_dir = tmp_path / ".data" / "argilla"
    try:
        for command in commands:
            result = run(command, tmp_path)
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            if " serve " in command:
                assert "Argilla is running at http://127.0.0.1:6900" in result.stdout
                again = run(command, tmp_path)  # a second serve on the same directory is refused
                assert again.returncode == 2 and "an Argilla already runs on .data/argilla" in again.stderr
            if " push " in command:
                assert "created 29, updated 0, unchanged 0" in result.stdout
            if " status " in command:
                assert "prefs-v1: 0/29 records completed (29 pending; 2 submitted response(s) complete a record)" in result.stdout
            if " scripted-annotators " in command:
                assert result.stdout.startswith("SCRIPTED annotators, not people: 2 accounts answered annotation/prefs-v1 "
                                                "by the rule prefer_model(chosen) with noise 0.1 (seed 0)")
                assert "scripted-annotator-1 29, scripted-annotator-2 29" in result.stdout
            if " stop " in command:
                assert "stopped the Argilla on .data/argilla" in result.stdout
    finally:
        run("python -m annotation stop --data-dir .data/argilla", tmp_path)
    pairs = [json.loads(line) for line in (tmp_path / "runs/data/pairs.jsonl").read_text().splitlines()]
    assert sum("gold" in row for row in pairs) == 5
    card = json.loads((tmp_path / "runs/prefs-v1/card.json").read_text())
    assert card["counts"]["records"] == 29 and card["counts"]["kept"] > 0
    assert card["scripted_responses"] == 58 and "not from people" in card["warning"]
    pulled = datasets.load_from_disk(str(tmp_path / "runs/prefs-v1"))
    assert len(pulled) == card["counts"]["kept"]
    row = pulled[0]  # TRL's conversational preference format, with an explicit prompt
    assert row["prompt"][-1]["role"] == "user" and [m["role"] for m in row["chosen"]] == ["assistant"]
    assert [m["role"] for m in row["rejected"]] == ["assistant"] and row["chosen"] != row["rejected"]
    # the rule prefers the preference rows' chosen answers; 10% noise flips only a few
    assert sum(model == "chosen" for model in pulled["chosen_model"]) >= 0.8 * len(pulled)
    assert not port_in_use("127.0.0.1", 6900) and not (data_dir / "serve.pid").exists()
    nothing = run("python -m annotation stop --data-dir .data/argilla", tmp_path)
    assert nothing.returncode == 0 and nothing.stdout.strip() == "no Argilla is running on .data/argilla"
