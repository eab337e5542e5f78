"""Entry point of every argilla-server process that `python -m annotation serve` starts.

Runs with the server's virtual environment: it registers the embedded search engine, then hands
the command line to argilla-server's own CLI (`start`, `worker`, `database migrate`,
`database users create`), so the server, the rq worker and their jobs all know the engine.
`... launch --each` runs several CLI commands, given as a JSON list of argv lists on standard
input (so that the owner's password never shows in the process list), in this one process:
importing argilla-server takes seconds, and a start needs the migration and the owner.
"""

import json
import os
import sys

from sqlalchemy import event
from sqlalchemy.engine import Engine

from annotation.server.argilla_process import embedded_engine  # noqa: F401  (registers the engine)
from annotation.server.argilla_process import speedups
from argilla_server.cli import app
from argilla_server.settings import settings


@event.listens_for(Engine, "connect")
def _sqlite_write_ahead_log(dbapi_connection, connection_record):
    """SQLite in write-ahead-log mode: readers (the search engine) never wait for a writer, and a
    commit costs one fsync of the log instead of several of a rollback journal (an annotator's
    response commits twice). synchronous=FULL keeps every commit durable, power loss included."""
    if settings.database_is_sqlite:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()


if __name__ == "__main__":
    if not os.environ.get("KLEAR_ARGILLA_STOCK_BULK"):  # set by bench/annotation_push_pull.py for its baseline
        speedups.install()
    if sys.argv[1:] == ["--each"]:
        for command in json.load(sys.stdin):
            app(command, standalone_mode=False)
    else:
        app()
