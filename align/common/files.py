"""Writing the project's JSON and JSONL outputs: whole or not at all (a killed run never leaves half a file)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def _replace_atomically(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: object) -> None:
    """`payload` as indented UTF-8 JSON (non-ASCII kept as is) with a final newline."""

    def write(handle):
        json.dump(payload, handle, ensure_ascii=False, indent=2)
        handle.write("\n")

    _replace_atomically(Path(path), write)


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """One JSON object per line, UTF-8, non-ASCII kept as is."""

    def write(handle):
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    _replace_atomically(Path(path), write)
