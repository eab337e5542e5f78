"""Helpers for the judge tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from align.data.benchmarks import alignbench_available, resolve_alignbench_dir

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
REAL = HERE / "real"  # real GPT-4 judgments with the answers they judged (see real/README.md)

# What FastChat's and THUDM's own code read from traps and prompts (recorded by running it), and the
# real judgments, read once for every test module.
FASTCHAT = json.loads((GOLDEN / "fastchat_mt_bench.json").read_text(encoding="utf-8"))
THUDM = json.loads((GOLDEN / "thudm_alignbench.json").read_text(encoding="utf-8"))
REAL_SINGLE = [json.loads(line) for line in (REAL / "gpt-4_single.jsonl").read_text().splitlines()]
REAL_PAIR = [json.loads(line) for line in (REAL / "gpt-4_pair.jsonl").read_text().splitlines()]

needs_alignbench = pytest.mark.skipif(
    not alignbench_available(),
    reason=f"AlignBench data not found at {resolve_alignbench_dir()} (it is never vendored: "
    "set ALIGNBENCH_DIR to a copy of THUDM/AlignBench's data/ and config/)",
)


@dataclass
class ScriptedJudge:
    base_url: str
    process: subprocess.Popen

    def requests(self) -> int:
        return self.stats()["requests"]

    def stats(self) -> dict:
        return httpx.get(self.base_url.removesuffix("/v1") + "/stats", timeout=5).json()


def start_scripted_judge(directory: Path, delay_s: float = 0.0, *options: str) -> ScriptedJudge:
    """`options`: more of scripted_judge.py's flags, e.g. ("--prefer", "Paris")."""
    directory.mkdir(parents=True, exist_ok=True)
    port_file = directory / "port"
    port_file.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, str(HERE / "scripted_judge.py"), "--port-file", str(port_file), "--delay", str(delay_s),
         "--replay", str(REAL / "gpt-4_single.jsonl"), str(REAL / "gpt-4_pair.jsonl"), *options]
    )
    deadline = time.monotonic() + 30
    while not (port_file.is_file() and port_file.read_text()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the scripted judge did not start")
        time.sleep(0.05)
    return ScriptedJudge(f"http://127.0.0.1:{port_file.read_text()}/v1", process)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def write_fastchat_answers(path: Path, answers: dict[int, list[str]]) -> Path:
    """A FastChat answer file (model = file stem)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for qid, turns in answers.items():
            row = {"question_id": qid, "answer_id": f"a{qid}", "model_id": path.stem, "choices": [{"index": 0, "turns": turns}]}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
