"""The README's annotation commands, run as written (in a fresh directory): demo data, pairs from
preference rows with gold pairs, `serve --detach`, a user, push, status, pull (nothing annotated
yet: an empty dataset that says why), `stop`. Also the refusals of a second serve and of a stop
where nothing runs."""

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
            if " stop " in command:
                assert "stopped the Argilla on .data/argilla" in result.stdout
    finally:
        run("python -m annotation stop --data-dir .data/argilla", tmp_path)
    pairs = [json.loads(line) for line in (tmp_path / "runs/data/pairs.jsonl").read_text().splitlines()]
    assert sum("gold" in row for row in pairs) == 5
    card = json.loads((tmp_path / "runs/prefs-v1/card.json").read_text())
    assert card["counts"] == {"records": 29, "kept": 0, "dropped": 29}
    assert card["empty_reason"].startswith("no pair was kept of 29 records: 24 were dropped as not_annotated")
    assert len(datasets.load_from_disk(str(tmp_path / "runs/prefs-v1"))) == 0
    assert not port_in_use("127.0.0.1", 6900) and not (data_dir / "serve.pid").exists()
    nothing = run("python -m annotation stop --data-dir .data/argilla", tmp_path)
    assert nothing.returncode == 0 and nothing.stdout.strip() == "no Argilla is running on .data/argilla"
