"""Which Argilla a client command talks to, and a clear message when it cannot.

The server comes from `--data-dir DIR` (its `credentials.json`, written by `serve`), else from
ARGILLA_API_URL / ARGILLA_API_KEY, else from the default data directory `.data/argilla`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from annotation.errors import AnnotationError

CREDENTIALS_FILE = "credentials.json"
DEFAULT_DATA_DIR = Path(".data/argilla")
DEFAULT_WORKSPACE = "annotation"


@dataclass(frozen=True)
class Credentials:
    api_url: str
    username: str
    password: str
    api_key: str
    workspace: str = DEFAULT_WORKSPACE

    @classmethod
    def from_file(cls, path: Path) -> "Credentials":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise AnnotationError(f"cannot read credentials from {path}: {error}") from error
        missing = [name for name in ("api_url", "username", "password", "api_key") if not data.get(name)]
        if missing:
            raise AnnotationError(f"{path}: missing field(s) {', '.join(missing)}")
        return cls(
            data["api_url"], data["username"], data["password"], data["api_key"], data.get("workspace", DEFAULT_WORKSPACE)
        )

    def as_dict(self) -> dict:
        return asdict(self)


def write_private_json(path: Path, data: dict) -> None:
    """Write JSON readable by its owner only (0600), atomically: never a half-written secret."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


@dataclass(frozen=True)
class ServerAddress:
    api_url: str
    api_key: str
    source: str  # where the address came from, for error messages
    workspace: str = DEFAULT_WORKSPACE


def resolve_server(data_dir: Optional[Path], environ: dict) -> ServerAddress:
    if data_dir is not None:
        return _from_data_dir(Path(data_dir))
    if environ.get("ARGILLA_API_URL") or environ.get("ARGILLA_API_KEY"):
        if not (environ.get("ARGILLA_API_URL") and environ.get("ARGILLA_API_KEY")):
            raise AnnotationError("set both ARGILLA_API_URL and ARGILLA_API_KEY (or pass --data-dir)")
        return ServerAddress(environ["ARGILLA_API_URL"].rstrip("/"), environ["ARGILLA_API_KEY"], "ARGILLA_API_URL/ARGILLA_API_KEY")
    if (DEFAULT_DATA_DIR / CREDENTIALS_FILE).exists():
        return _from_data_dir(DEFAULT_DATA_DIR)
    raise AnnotationError(
        "no Argilla server given: pass --data-dir DIR (of `python -m annotation serve`), "
        "or set ARGILLA_API_URL and ARGILLA_API_KEY"
    )


def _from_data_dir(data_dir: Path) -> ServerAddress:
    path = data_dir / CREDENTIALS_FILE
    if not path.exists():
        raise AnnotationError(f"{path} does not exist: start the server with `python -m annotation serve --data-dir {data_dir}`")
    credentials = Credentials.from_file(path)
    return ServerAddress(credentials.api_url.rstrip("/"), credentials.api_key, str(path), credentials.workspace)


def check_server(address: ServerAddress) -> dict:
    """The user the API key belongs to; a clear error when the server is unreachable or says no."""
    import httpx

    from annotation.argilla_adapter import check_server_version

    try:
        with httpx.Client(base_url=address.api_url, headers={"X-Argilla-Api-Key": address.api_key}, timeout=15) as http:
            response = http.get("/api/v1/me")
            if response.status_code == 200:
                check_server_version(http, address.api_url)
    except httpx.HTTPError as error:
        raise AnnotationError(
            f"cannot reach Argilla at {address.api_url} ({type(error).__name__}: {error}); "
            f"is `python -m annotation serve` running? (server taken from {address.source})"
        ) from error
    if response.status_code == 401:
        raise AnnotationError(
            f"Argilla at {address.api_url} rejected the API key from {address.source} (HTTP 401): "
            "the key is wrong or its user was deleted"
        )
    if response.status_code != 200:
        raise AnnotationError(f"Argilla at {address.api_url} answered HTTP {response.status_code}: {response.text[:300]}")
    return response.json()


def lookup(find, *args, **kwargs):
    """A client lookup (`client.users(name)`, `client.datasets(...)`) without the SDK's warning
    when the answer is None: finding nothing is an expected answer here."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return find(*args, **kwargs)


def connect(data_dir: Optional[Path] = None, environ: Optional[dict] = None):
    """An `argilla.Argilla` client for the resolved server, checked before use."""
    address = resolve_server(data_dir, dict(os.environ) if environ is None else environ)
    check_server(address)
    import argilla as rg

    return rg.Argilla(api_url=address.api_url, api_key=address.api_key, timeout=120), address
