"""Fixtures for the judge tests: real server processes on loopback, shared per session.

- `scripted_judge`: tests/judging/scripted_judge.py, an OpenAI-compatible HTTP server whose
  judgments are scripted (a stand-in for the judge *model*; the client path is real).
- `transformers_server`: `transformers serve` with the random tiny Klear checkpoint
  (tests/conftest.py's `tiny_klear_dir`), offline; its output is noise, which exercises the
  failure path.
"""

from __future__ import annotations

import pytest
from judging_support import start_scripted_judge, stop


@pytest.fixture(scope="session")
def scripted_judge(tmp_path_factory):
    judge = start_scripted_judge(tmp_path_factory.mktemp("scripted_judge"))
    yield judge
    stop(judge.process)


@pytest.fixture(scope="session")
def transformers_server(tiny_klear_dir, tmp_path_factory):
    from align.judging.local_server import serve_model

    with serve_model(tiny_klear_dir, tmp_path_factory.mktemp("serve") / "serve.log") as server:
        yield server
