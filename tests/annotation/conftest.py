"""One real Argilla for the annotation tests: `python -m annotation serve` (argilla-server in its
own venv, real Redis, the rq worker, the embedded search engine), started once per session."""

from __future__ import annotations

import pytest
from argilla_helpers import ANNOTATORS, ServeProcess

from annotation.serve import free_loopback_port


@pytest.fixture(scope="session")
def argilla(tmp_path_factory):
    root = tmp_path_factory.mktemp("argilla")
    server = ServeProcess(root / "data", free_loopback_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def annotators(argilla) -> dict:
    """Three annotator accounts, members of the owner's workspace: {username: password}."""
    from annotation.users import add_user

    client = argilla.client()
    for name, password in ANNOTATORS.items():
        add_user(client, name, password, "annotator", argilla.credentials["workspace"])
    return dict(ANNOTATORS)
