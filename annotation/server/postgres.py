"""Argilla's database: SQLite (one person), a PostgreSQL cluster that `serve` owns, or a team's server.

`serve --database postgresql` creates a PostgreSQL cluster under the data directory
(`DIR/postgres`) with Debian's binaries (`/usr/lib/postgresql/<version>/bin`), starts it on a
free loopback port for as long as `serve` runs (TCP on 127.0.0.1 only, no Unix socket,
password authentication with a random password kept in `DIR/postgres.json`, mode 0600), and
stops it last. PostgreSQL refuses to run as root, so under root the cluster belongs to the
`postgres` account Debian's package creates (or KLEAR_POSTGRES_USER), and the data directory
becomes traversable (0711, not listable) so that account reaches its own subdirectory.
`--database-url postgresql://...` uses a server someone else runs instead.

Which database a data directory uses is recorded in `DIR/database.json` when it is created, so
a restart without options finds the same data, and a mismatched option is refused.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from annotation.connection import write_private_json
from annotation.errors import AnnotationError

DATABASE_FILE = "database.json"
CLUSTER_DIR = "postgres"
SECRET_FILE = "postgres.json"
ROLE = "argilla"
DATABASE = "argilla"
CHOICES = ("sqlite", "postgresql")
READY_TIMEOUT_S = 60


@dataclass(frozen=True)
class DatabaseChoice:
    kind: str  # sqlite | postgresql (a cluster serve owns) | postgresql-url (someone else's server)
    url: Optional[str] = None  # only for postgresql-url

    def describe(self) -> str:
        if self.kind == "postgresql-url":
            return f"PostgreSQL at {redact_url(self.url)}"
        return {"sqlite": "SQLite", "postgresql": "PostgreSQL (a local cluster in the data directory)"}[self.kind]


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def asyncpg_url(url: str) -> str:
    """A PostgreSQL URL with argilla-server's async driver (it also accepts the sync spellings)."""
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    raise AnnotationError(f"--database-url {redact_url(url)!r} is not a PostgreSQL URL (postgresql://USER:PASSWORD@HOST:PORT/DB)")


def choose_database(data_dir: Path, requested: Optional[str], url: Optional[str]) -> DatabaseChoice:
    """The database of this data directory: the one it was created with, else the one asked for
    (SQLite by default). Asking for another one than it holds is refused: its data is elsewhere."""
    if requested is not None and requested not in CHOICES:
        raise AnnotationError(f"--database {requested!r}: choose one of {', '.join(CHOICES)}")
    if url is not None and requested == "sqlite":
        raise AnnotationError("--database sqlite and --database-url contradict each other: give one")
    wanted = DatabaseChoice("postgresql-url", asyncpg_url(url)) if url else (DatabaseChoice(requested) if requested else None)
    path = data_dir / DATABASE_FILE
    recorded = None
    if path.exists():
        saved = json.loads(path.read_text())
        recorded = DatabaseChoice(saved["kind"], saved.get("url"))
    elif (data_dir / "credentials.json").exists():  # made before the choice was recorded: SQLite
        recorded = DatabaseChoice("sqlite")
    if recorded is None:
        return wanted or DatabaseChoice("sqlite")
    if wanted is None or wanted.kind == recorded.kind:
        return wanted or recorded  # an external server's URL may change (a new password, a new host)
    option = {"sqlite": "--database sqlite", "postgresql": "--database postgresql", "postgresql-url": "--database-url URL"}
    raise AnnotationError(
        f"{data_dir} holds an Argilla on {recorded.describe()}; start it the same way ({option[recorded.kind]} "
        f"or no database option), or use a new --data-dir for {wanted.describe()}"
    )


def record_database(data_dir: Path, choice: DatabaseChoice) -> None:
    write_private_json(data_dir / DATABASE_FILE, {"kind": choice.kind, **({"url": choice.url} if choice.url else {})})


# ---------------------------------------------------------------- the local cluster


def find_binaries() -> Path:
    """The directory holding initdb, postgres, pg_isready and createdb (the newest Debian version)."""
    candidates = []
    if os.environ.get("KLEAR_POSTGRES_BIN"):
        candidates.append(Path(os.environ["KLEAR_POSTGRES_BIN"]))
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _version_key(p.parent.name), reverse=True)
    candidates += versions
    for directory in candidates:
        if all((directory / name).exists() for name in ("initdb", "postgres", "pg_isready", "createdb")):
            return directory
    raise AnnotationError(
        "PostgreSQL's server binaries (initdb, postgres) are not installed: Debian: apt-get install postgresql "
        "(scripts/install-system-deps.sh does it), or set KLEAR_POSTGRES_BIN to their directory"
    )


def _version_key(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else 0 for part in name.split("."))


def cluster_account() -> Optional[pwd.struct_passwd]:
    """The OS account that runs the cluster: None (this process's own) unless running as root,
    which PostgreSQL refuses; then `postgres` (or KLEAR_POSTGRES_USER)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("KLEAR_POSTGRES_USER", "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError as error:
        raise AnnotationError(
            f"running as root, and PostgreSQL refuses to run as root; the account {name!r} it would run as "
            "does not exist (Debian's postgresql package creates `postgres`; or set KLEAR_POSTGRES_USER)"
        ) from error


class LocalCluster:
    """DIR/postgres: created once (initdb), started by `serve` on a loopback port, stopped last."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir.resolve()  # postgres runs with the cluster as its working directory
        self.pgdata = self.data_dir / CLUSTER_DIR
        self.bin = find_binaries()
        self.account = cluster_account()

    def _as_account(self) -> dict:
        """Popen arguments that run a command as the cluster's account."""
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": [], "cwd": str(self.pgdata)}

    def prepare(self, log) -> str:
        """Create the cluster if needed; return the password of the `argilla` role."""
        if self.account is not None:
            os.chmod(self.data_dir, 0o711)  # the account must reach DIR/postgres; nothing here is listable
            self._check_reachable()
        secret_path = self.data_dir / SECRET_FILE
        if (self.pgdata / "PG_VERSION").exists():
            if not secret_path.exists():
                raise AnnotationError(f"{self.pgdata} exists but {secret_path} (its password) is gone; restore it")
            self._stop_leftover(log)
            return json.loads(secret_path.read_text())["password"]
        password = secrets.token_urlsafe(24)
        write_private_json(secret_path, {"role": ROLE, "password": password})  # before initdb: never a lost password
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if self.account is not None:
            os.chown(self.pgdata, self.account.pw_uid, self.account.pw_gid)
        log(f"creating a PostgreSQL cluster in {self.pgdata} ({self.bin.parent.name})")
        password_file = self.data_dir / ".postgres-initdb-password"  # read by initdb, then removed
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        if self.account is not None:
            os.chown(password_file, self.account.pw_uid, self.account.pw_gid)
        argv = [str(self.bin / "initdb"), "-D", str(self.pgdata), "-U", ROLE, f"--pwfile={password_file}", "-E", "UTF8"]
        argv += ["--no-locale", "--auth=scram-sha-256"]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, **self._as_account())
        finally:
            password_file.unlink()
        if result.returncode != 0:
            raise AnnotationError(f"initdb failed for {self.pgdata}:\n{(result.stdout + result.stderr)[-1500:]}")
        return password

    def _check_reachable(self) -> None:
        """Every directory above the data directory must let the cluster's account through."""
        account = self.account
        for directory in self.data_dir.parents:
            info = directory.stat()
            mode = info.st_mode
            if (mode & stat.S_IXOTH or (info.st_uid == account.pw_uid and mode & stat.S_IXUSR)
                    or (info.st_gid == account.pw_gid and mode & stat.S_IXGRP)):
                continue
            raise AnnotationError(
                f"PostgreSQL runs as {account.pw_name!r} (it refuses root), which cannot reach {self.data_dir}: "
                f"{directory} is closed to it (mode {stat.filemode(mode)}). Use a --data-dir outside it, "
                f"or let it through: chmod o+x {directory}"
            )

    def _stop_leftover(self, log) -> None:
        """A postgres left running by a `serve` that was killed: stop it (fast shutdown)."""
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            return  # stale: postgres removes it itself on start
        log(f"stopping the PostgreSQL (pid {pid}) an earlier serve left running on {self.pgdata}")
        os.kill(pid, signal.SIGINT)
        for _ in range(150):
            if not pid_file.exists():
                return
            time.sleep(0.2)
        raise AnnotationError(f"the PostgreSQL left running on {self.pgdata} (pid {pid}) did not stop; stop it and retry")

    def argv(self, port: int) -> list:
        # Loopback TCP only; no Unix socket (its default directory belongs to the system's clusters).
        return [str(self.bin / "postgres"), "-D", str(self.pgdata), "-p", str(port),
                "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]

    def popen_options(self) -> dict:
        return self._as_account()

    def wait_ready(self, port: int, process: subprocess.Popen) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            ready = subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)])
            if ready.returncode == 0:
                return True
            time.sleep(0.2)
        return False

    def create_database(self, port: int, password: str) -> None:
        """The `argilla` database, on the first start (later starts find it)."""
        env = dict(os.environ, PGPASSWORD=password)
        argv = [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", ROLE, DATABASE]
        result = subprocess.run(argv, env=env, capture_output=True, text=True)
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise AnnotationError(f"createdb {DATABASE} failed: {result.stderr.strip()}")


def cluster_url(password: str, port: int) -> str:
    return f"postgresql+asyncpg://{ROLE}:{quote(password, safe='')}@127.0.0.1:{port}/{DATABASE}"
