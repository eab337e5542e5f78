"""What the vLLM serving tests share besides fixtures (tests/serving/conftest.py): settings, and how to
run `python -m align.serve` until it prints its URL."""

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_NEW_TOKENS = 24
# vLLM on a 2-core machine: the offline engine in one process, the KV cache bounded (see docs/serving.md).
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
ENGINE_ARGS = ["--dtype", "float32", "--max-model-len", "1024"]


def serve(checkpoint: Path, log: Path, *extra_args: str):
    """Run `python -m align.serve CHECKPOINT --port 0 ...` until it prints its base URL; yield
    {base_url, model, log}; then stop it and check that its vLLM server went down with it."""
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "align.serve", str(checkpoint), "--port", "0", *ENGINE_ARGS, *extra_args],
            stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **VLLM_ENV}, cwd=REPO_ROOT,
        )
    try:
        deadline = time.monotonic() + 600
        while not (found := re.search(r"Klear is served at (\S+)\s+\(model name: '([^']+)'", log.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        yield {"base_url": found.group(1), "model": found.group(2), "log": log}
    finally:
        process.terminate()
        process.wait(timeout=120)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{found.group(1)}/models", timeout=2).close()
        except OSError:
            break
        time.sleep(1)
    else:
        pytest.fail(f"the vLLM server at {found.group(1)} outlived align.serve")
