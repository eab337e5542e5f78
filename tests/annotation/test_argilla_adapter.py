"""The Argilla adapter: the only module of `annotation/` that touches Argilla's private client API or
the web UI's own endpoints (tests/test_adapters.py checks that), and its version check."""

import warnings
from pathlib import Path

import pytest

from annotation import argilla_adapter
from annotation.server.argilla_process import speedups

REPO = Path(__file__).resolve().parents[2]


def test_version_differences_are_named_and_local_build_tags_ignored():
    assert argilla_adapter.version_difference("argilla", "2.8.0") is None
    assert argilla_adapter.version_difference("argilla", "2.8.0+local") is None
    assert argilla_adapter.version_difference("argilla", None) is None
    assert argilla_adapter.version_difference("argilla-server", "2.9.1") == "argilla-server 2.9.1 (written for 2.8.0)"


def test_another_sdk_version_is_named_in_one_warning(monkeypatch):
    monkeypatch.setattr(argilla_adapter, "installed_sdk_version", lambda: "2.9.0")
    with pytest.warns(RuntimeWarning, match=r"argilla 2\.9\.0 \(written for 2\.8\.0\)"):
        assert argilla_adapter.check_sdk_version() == "argilla 2.9.0 (written for 2.8.0)"


def test_the_pinned_versions_are_the_ones_it_was_written_for():
    """Pins moved (pyproject.toml's argilla, server-requirements.txt's argilla-server)? Re-check what
    argilla_adapter and server/argilla_process touch, then update WRITTEN_FOR and speedups."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert argilla_adapter.check_sdk_version() is None
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"argilla=={argilla_adapter.WRITTEN_FOR["argilla"]}"' in pyproject
    server_pins = (REPO / "annotation/server/server-requirements.txt").read_text().splitlines()
    assert f"argilla-server=={argilla_adapter.WRITTEN_FOR['argilla-server']}" in server_pins
    assert speedups.EXPECTED_VERSION == argilla_adapter.WRITTEN_FOR["argilla-server"]


@pytest.mark.slow
def test_the_test_server_is_the_version_written_for_and_another_is_named(argilla, monkeypatch):
    import httpx

    with httpx.Client(base_url=argilla.api_url) as http:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert argilla_adapter.check_server_version(http, argilla.api_url) is None
        monkeypatch.setitem(argilla_adapter.WRITTEN_FOR, "argilla-server", "2.7.0")
        with pytest.warns(RuntimeWarning, match=r"is argilla-server 2\.8\.0 \(written for 2\.7\.0\)"):
            argilla_adapter.check_server_version(http, argilla.api_url)
