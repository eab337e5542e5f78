"""Helpers of the annotation tests: the `serve` process, and talking to it as users do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

START_TIMEOUT_S = 400  # the first start may create the server's venv (a minute or two)
ANNOTATORS = {"ann1": "ann1-password", "ann2": "ann2-password", "ann3": "ann3-password"}


class ServeProcess:
    """`python -m annotation serve` as a user runs it, stoppable and restartable. The database is
    named on the first start only: a restart finds it from the data directory."""

    def __init__(self, data_dir: Path, port: int, database: str = "sqlite"):
        self.data_dir = data_dir
        self.port = port
        self.database = database
        self.process = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"serve-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        argv = [sys.executable, "-m", "annotation", "serve", "--data-dir", str(self.data_dir), "--port", str(self.port)]
        if self.starts == 1:
            argv += ["--database", self.database]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            if "Argilla is running at" in self.log_path.read_text():
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"serve did not start in {START_TIMEOUT_S}s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def crash(self) -> None:
        """`kill -9` the serve process alone: what it started runs on, orphaned."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def credentials(self) -> dict:
        return json.loads((self.data_dir / "credentials.json").read_text())

    @property
    def api_url(self) -> str:
        return self.credentials["api_url"]

    def client(self):
        from annotation.connection import connect

        return connect(self.data_dir)[0]

    def http(self, api_key=None) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url, headers={"X-Argilla-Api-Key": api_key or self.credentials["api_key"]}, timeout=60
        )

    def cli(self, *args: str, env: dict | None = None, data_dir: bool = True) -> subprocess.CompletedProcess:
        """Run `python -m annotation ARGS` against this server, as a user would."""
        argv = [sys.executable, "-m", "annotation", *args]
        if data_dir:
            argv += ["--data-dir", str(self.data_dir)]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ARGILLA_")}
        full_env.update(env or {})
        return subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=300)


def write_pairs(path: Path, prompts: list, **metadata) -> Path:
    """push's input: each prompt with a GOOD and a weak answer from two models."""
    rows = [
        {
            "id": f"q{i}",
            "prompt": prompt,
            "completions": [
                {"model": "model-good", "content": f"GOOD answer to: {prompt}"},
                {"model": "model-weak", "content": f"weak answer to: {prompt}"},
            ],
            "metadata": {"source": "tests", "category": metadata.get("category", "general")},
        }
        for i, prompt in enumerate(prompts)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def login(argilla, username: str, password: str) -> httpx.Client:
    """An HTTP client logged in as an annotator (the web UI's token login)."""
    token = httpx.post(f"{argilla.api_url}/api/v1/token", data={"username": username, "password": password})
    token.raise_for_status()
    return httpx.Client(
        base_url=argilla.api_url, headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=60
    )


def dataset_id(argilla, name: str) -> str:
    with argilla.http() as http:
        items = http.get("/api/v1/me/datasets").json()["items"]
    return next(item["id"] for item in items if item["name"] == name)


def records_by_prompt(argilla, name: str) -> dict:
    """{prompt text: record as the API returns it (with responses and suggestions)}."""
    with argilla.http() as http:
        found = http.get(
            f"/api/v1/datasets/{dataset_id(argilla, name)}/records",
            params={"include": ["responses", "suggestions"], "limit": 1000},
        ).json()["items"]
    return {record["fields"]["prompt"][-1]["content"]: record for record in found}
