"""A local OpenAI-compatible endpoint: `transformers serve` for a model directory, on loopback.

`transformers serve` runs in a process of its own, which would not know the Klear architecture;
running it as `python -m align.judging.local_server MODEL_DIR ...` imports `align` first (which
registers Klear with transformers' Auto classes) and then hands over to transformers' own CLI.

    python -m align.judging.local_server MODEL_DIR --host 127.0.0.1 --port 8000 --device cpu
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from align.common.ports import free_loopback_port


class LocalServerError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalServer:
    base_url: str  # ends in /v1
    model: str  # the name requests must use: transformers serve pins the model to its path
    log_path: Path


def wait_until_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalServerError(f"transformers serve exited with code {process.returncode}; see {log_path}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.5)
    raise LocalServerError(f"transformers serve did not answer {url} within {timeout_s:.0f}s; see {log_path}")


@contextlib.contextmanager
def serve_model(
    model_dir: str | Path, log_path: str | Path, *, device: str = "cpu", startup_timeout_s: float = 180.0
) -> Iterator[LocalServer]:
    """Start `transformers serve MODEL_DIR` on a free loopback port; stop it on exit. Works offline."""
    model_dir = Path(model_dir).resolve()
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = free_loopback_port()
    command = [sys.executable, "-m", "align.judging.local_server", str(model_dir)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--device", device]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_NO_ADVISORY_WARNINGS="1")
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/health", process, log_path, startup_timeout_s)
        yield LocalServer(base_url=f"http://127.0.0.1:{port}/v1", model=str(model_dir), log_path=log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def expose_architecture(model_dir: str) -> None:
    """transformers serve looks the model class up as `getattr(transformers, config.architectures[0])`,
    which finds only built-in classes; put a class registered with AutoModelForCausalLM (Klear) there."""
    import transformers
    from transformers import AutoConfig

    from align.training.compat import causal_lm_class

    config = AutoConfig.from_pretrained(model_dir)
    name = (config.architectures or [None])[0]
    if name and not hasattr(transformers, name):
        setattr(transformers, name, causal_lm_class(config))


def main(argv: list[str] | None = None) -> None:
    import align  # noqa: F401  (registers Klear before transformers loads the model)
    from transformers.cli.transformers import main as transformers_cli

    args = sys.argv[1:] if argv is None else argv
    if args and not args[0].startswith("-") and Path(args[0]).is_dir():
        expose_architecture(args[0])
    sys.argv = ["transformers", "serve", *args]
    transformers_cli()


if __name__ == "__main__":
    main()
