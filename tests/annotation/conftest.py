"""One real Argilla per database for the annotation tests: `python -m annotation serve` (argilla-server
in its own venv, real Redis, the rq worker, the embedded search engine) on SQLite and on a
PostgreSQL cluster it owns; each started once per session, so every test that uses `argilla` runs
on both."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from argilla_helpers import ANNOTATORS, ServeProcess

from align.common.ports import free_loopback_port

DATABASES = ("sqlite", "postgresql")


def _postgresql_missing() -> str:
    from annotation.errors import AnnotationError
    from annotation.server.postgres import find_binaries

    try:
        find_binaries()
    except AnnotationError as error:
        return str(error)
    return ""


@pytest.fixture(scope="session", params=DATABASES)
def argilla(request, tmp_path_factory):
    if request.param == "postgresql" and _postgresql_missing():
        pytest.skip(_postgresql_missing())
    if request.param == "postgresql" and os.geteuid() == 0:
        # PostgreSQL runs as the `postgres` account then, which pytest's own (0700) tmp dirs shut out
        root = Path(tempfile.mkdtemp(prefix="klear-argilla-postgresql-"))
        root.chmod(0o711)
    else:
        root = tmp_path_factory.mktemp(f"argilla-{request.param}")
    server = ServeProcess(root / "data", free_loopback_port(), database=request.param)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if request.param == "postgresql" and os.geteuid() == 0:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def annotators(argilla) -> dict:
    """Three annotator accounts, members of the owner's workspace: {username: password}."""
    from annotation.users import add_user

    client = argilla.client()
    for name, password in ANNOTATORS.items():
        add_user(client, name, password, "annotator", argilla.credentials["workspace"])
    return dict(ANNOTATORS)
