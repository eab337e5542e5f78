"""The one place in `annotation/` that touches Argilla's private or undocumented APIs.

Written for (and tested with) the versions in `WRITTEN_FOR`: the argilla SDK installed beside the
training stack, and argilla-server 2.8.0 in its own venv (`annotation/server/server-requirements.txt`;
its internals are patched only by `server/argilla_process/speedups.py`, which checks the server's
version inside the server processes). `check_sdk_version()` runs on import and warns once, naming the
difference, when the installed SDK is another version; `check_server_version()` does the same for
the server a client command connects to (`connection.connect`). What is used, and why:

- `client.api.records.list` (paged, with responses and suggestions): push and pull read every
  record's raw model (its external id, responses with user ids and statuses, suggestions by
  question id) in pages of 1,000; the public `dataset.records(...)` yields record objects in
  batches of 100.
- `client.api.records.bulk_upsert` of `Record.api_model()`s: the public `dataset.records.log`
  sends 256 records per request with no hook between batches; push sends argilla-server's 500 per
  request, retries a batch, and stops cleanly between two of them on Ctrl-C.
- `client.api.datasets.get(id).distribution`: a listed dataset carries the SDK's default
  distribution, not the server's `min_submitted`.
- `client.api.records.create_record_response` of an `argilla._models.UserResponseModel` for a record's
  `_server_id` (`submit_response`): one annotator's response through the SDK, one request, as the team
  tests submit theirs; the public route (`record.responses.add`, then `dataset.records.log`) sends the
  whole record again.
- `argilla._exceptions.ArgillaAPIError`: what the SDK raises for an HTTP error (with `status_code`),
  not exported by `argilla`.
- the web UI's own REST endpoints (`/api/v1/token`, `/api/v1/me/...`): the scripted annotators
  log in and answer their queue exactly as a person's browser does (`annotation/simulate.py`);
  the SDK has no per-annotator queue.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from typing import Iterator, Optional

from annotation.errors import AnnotationError

WRITTEN_FOR = {"argilla": "2.8.0", "argilla-server": "2.8.0"}
LIST_PAGE = 1000  # argilla-server's most records per list request
RECORDS_PER_UPSERT = 500  # argilla-server's most records per bulk upsert
RESPONSES_PER_REQUEST = 100  # argilla-server's most responses per bulk request

# The web UI's queue: records this user has not answered, that are not yet complete.
PENDING_QUEUE = {
    "filters": {
        "and": [
            {"type": "terms", "scope": {"entity": "response", "property": "status"}, "values": ["pending"]},
            {"type": "terms", "scope": {"entity": "record", "property": "status"}, "values": ["pending"]},
        ]
    }
}


def version_difference(package: str, found: Optional[str]) -> Optional[str]:
    """`"argilla 2.9.0 (written for 2.8.0)"`, or None when `found` is the version written for or unknown."""
    expected = WRITTEN_FOR[package]
    if found is None or found.split("+")[0] == expected:
        return None
    return f"{package} {found} (written for {expected})"


def installed_sdk_version() -> Optional[str]:
    try:
        return importlib.metadata.version("argilla")
    except importlib.metadata.PackageNotFoundError:
        return None


def check_sdk_version() -> Optional[str]:
    difference = version_difference("argilla", installed_sdk_version())
    if difference:
        warnings.warn(
            f"annotation.argilla_adapter touches private APIs of the argilla SDK and was written for another version: "
            f"{difference}. push, pull, status and the scripted annotators may break; tests/annotation tells.",
            RuntimeWarning,
            stacklevel=2,
        )
    return difference


check_sdk_version()


def check_server_version(http, source: str) -> Optional[str]:
    """Warn when the server at `http` (an httpx client with its base URL) is not argilla-server 2.8.0."""
    response = http.get("/api/v1/version")
    found = response.json().get("version") if response.status_code == 200 else None
    difference = version_difference("argilla-server", found)
    if difference:
        warnings.warn(
            f"the Argilla at {source} is {difference}: annotation/ uses endpoints and record layouts of 2.8.0, "
            "which may have changed",
            RuntimeWarning,
            stacklevel=2,
        )
    return difference


# ---- the SDK's private client API --------------------------------------------------------------


def api_error_type():
    """The SDK's exception for an HTTP error; it carries `status_code`."""
    from argilla._exceptions import ArgillaAPIError

    return ArgillaAPIError


def record_pages(client, dataset) -> Iterator[list]:
    """Every record of the dataset as the API returns it (`RecordModel`s, responses and suggestions
    included), a page at a time."""
    offset = 0
    while True:
        page = client.api.records.list(dataset.id, offset=offset, limit=LIST_PAGE, with_responses=True,
                                       with_suggestions=True)
        yield page
        if len(page) < LIST_PAGE:
            return
        offset += LIST_PAGE


def record_dicts(client, dataset) -> Iterator[dict]:
    """Every record of the dataset as a dict (`RecordModel.model_dump()`: responses and suggestions included)."""
    for page in record_pages(client, dataset):
        for model in page:
            yield model.model_dump()


def record_key(record: dict) -> str:
    """A record's stable id (a dict of `record_dicts` or of an annotator's queue): its external id, which is the
    pair's id in push's input and the same on every server, else Argilla's own."""
    return str(record.get("external_id") or record["id"])


def record_metadata(record: dict) -> dict:
    """A record's metadata as a dict (a raw model of `record_pages` may carry a list of {name, value})."""
    metadata = record.get("metadata") or {}
    if isinstance(metadata, list):
        metadata = {item["name"]: item["value"] for item in metadata}
    return metadata


def upsert_records(client, dataset, records: list) -> None:
    """Create or update up to RECORDS_PER_UPSERT `argilla.Record`s of `dataset` in one request."""
    models = []
    for record in records:
        record.dataset = dataset
        models.append(record.api_model())
    client.api.records.bulk_upsert(dataset.id, models)


def submit_response(client, record, values: dict) -> None:
    """Submit the response of `client`'s own user to one `argilla.Record`: {question name: value}."""
    from argilla._models import UserResponseModel

    response = UserResponseModel(values={name: {"value": value} for name, value in values.items()},
                                 status="submitted", user_id=client.me.id)
    client.api.records.create_record_response(record._server_id, response)


def server_min_submitted(client, dataset) -> int:
    """The dataset's `min_submitted` as the server keeps it."""
    return client.api.datasets.get(dataset.id).distribution.min_submitted


# ---- the web UI's endpoints (an annotator's session) -------------------------------------------


class AnnotatorSession:
    """An annotator logged in as the web UI logs in (`http`: an httpx client on the server's URL);
    a refused request raises `AnnotationError` naming it."""

    def __init__(self, http, username: str, password: str):
        self.http, self.username = http, username
        response = http.post("/api/v1/token", data={"username": username, "password": password})
        if response.status_code != 201:
            raise AnnotationError(f"cannot log in as {username!r}: HTTP {response.status_code}")
        self.headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    def dataset_id(self, dataset: str, workspace: str) -> str:
        workspaces = {w["id"]: w["name"] for w in self._ok(self.http.get("/api/v1/me/workspaces", headers=self.headers))["items"]}
        for item in self._ok(self.http.get("/api/v1/me/datasets", headers=self.headers))["items"]:
            if item["name"] == dataset and workspaces.get(item["workspace_id"]) == workspace:
                return item["id"]
        raise AnnotationError(f"dataset {workspace}/{dataset} is not visible to {self.username!r} (not a workspace member?)")

    def pending_records(self, dataset_id: str, limit: int) -> list:
        """Up to `limit` records of this annotator's queue, as the web UI shows them (`record` dicts)."""
        found = self._ok(self.http.post(f"/api/v1/me/datasets/{dataset_id}/records/search", headers=self.headers,
                                        json=PENDING_QUEUE, params={"limit": limit}))
        return [item["record"] for item in found["items"]]

    def submit(self, answers: list) -> None:
        """Submit responses: `answers` = [(record id, {question name: value})], at most RESPONSES_PER_REQUEST."""
        items = [{"record_id": record_id, "status": "submitted",
                  "values": {name: {"value": value} for name, value in values.items()}}
                 for record_id, values in answers]
        result = self._ok(self.http.post("/api/v1/me/responses/bulk", headers=self.headers, json={"items": items}))
        errors = [entry["error"] for entry in result["items"] if entry.get("error")]
        if errors:
            raise AnnotationError(f"Argilla refused responses of {self.username!r}: {errors[0]}")

    def _ok(self, response) -> dict:
        if response.status_code >= 400:
            raise AnnotationError(f"{response.request.method} {response.request.url.path}: HTTP {response.status_code} "
                             f"{response.text[:300]}")
        return response.json()
