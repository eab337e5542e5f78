"""argilla-server's own virtual environment: where it lives, and making it (once).

argilla-server 2.8.0 pins pydantic ~=2.9, fastapi ~=0.115 and typer <0.10, which the training
stack cannot share, so it gets a venv of its own, pinned by `server-requirements.txt`. It lives
inside the project's venv (`.venv/argilla-server`, so `make clean` removes it) unless
KLEAR_ARGILLA_SERVER_VENV names another place.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("server-requirements.txt")
MARKER = ".klear-requirements.sha256"


def default_server_venv() -> Path:
    if os.environ.get("KLEAR_ARGILLA_SERVER_VENV"):
        return Path(os.environ["KLEAR_ARGILLA_SERVER_VENV"])
    if sys.prefix != sys.base_prefix:  # running inside a venv: keep the server's beside it
        return Path(sys.prefix) / "argilla-server"
    return Path.home() / ".cache" / "klear-align" / "argilla-server"


def server_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def is_installed(venv: Path) -> bool:
    """True when the venv holds exactly the pinned set (a changed pin means reinstalling)."""
    marker = venv / MARKER
    return server_python(venv).exists() and marker.exists() and marker.read_text().strip() == _requirements_digest()


def install_server(venv: Path, log=print) -> None:
    """Create (or bring up to date) the server venv; does nothing when it is already current."""
    if is_installed(venv):
        log(f"argilla-server venv is up to date: {venv}")
        return
    log(f"installing argilla-server 2.8.0 into its own venv {venv} (pinned by {REQUIREMENTS.name}) ...")
    if not server_python(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(server_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    subprocess.run(pip + ["-r", str(REQUIREMENTS)], check=True)
    (venv / MARKER).write_text(_requirements_digest() + "\n")
    log(f"argilla-server installed: {venv}")


def ensure_server(venv: Path, log=print) -> Path:
    """The server venv's python, installing the server first (with a message) when it is missing."""
    if not is_installed(venv):
        log(f"argilla-server's venv {venv} is missing or out of date; creating it now (a minute or two, once).")
        install_server(venv, log=log)
    return server_python(venv)
