"""`python -m annotation serve`: a local Argilla with nothing else to install.

Starts, under one data directory: Redis on a free loopback port (unless ARGILLA_REDIS_URL is
set), the database (SQLite; or a PostgreSQL cluster of its own, or a team's PostgreSQL: see
`postgres.py`) and its migration, an owner with a random password and API key, argilla-server
(the embedded search engine or `--elasticsearch URL`) and its rq worker; then writes
`DIR/credentials.json` (mode 0600) once the server answers, and runs until stopped (Ctrl-C,
SIGTERM, or `annotation stop --data-dir DIR`; `--detach` runs it in the background).
Restarting on the same directory keeps every record and response, and the same owner.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from align.common.ports import free_loopback_port, port_in_use
from annotation.connection import CREDENTIALS_FILE, DEFAULT_WORKSPACE, Credentials, write_private_json
from annotation.errors import AnnotationError
from annotation.server.install import default_server_venv, ensure_server
from annotation.server.postgres import DatabaseChoice, LocalCluster, choose_database, cluster_url, record_database
from annotation.server.process_records import clear_records, describe, leftovers, record_for, write_records

OWNER_USERNAME = "owner"
PENDING_OWNER_FILE = ".owner-pending.json"  # an owner created, the server not yet up
READY_TIMEOUT_S = 180


class ServeError(AnnotationError):
    """Something stops the local Argilla from starting; the message says what and what to do."""


@dataclass(frozen=True)
class ServeConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 6900
    allow_remote: bool = False
    elasticsearch: Optional[str] = None
    redis_url: Optional[str] = None
    workspace: str = DEFAULT_WORKSPACE
    database: Optional[str] = None  # sqlite | postgresql; None: what DIR was created with (else sqlite)
    database_url: Optional[str] = None  # an existing PostgreSQL server
    server_venv: Path = field(default_factory=default_server_venv)


def check_port(port: int) -> None:
    """1..65535: outside it the socket calls raise OverflowError, and 0 (any port) leaves no address to write down."""
    if not 1 <= port <= 65535:
        raise ServeError(f"--port must be between 1 and 65535, not {port}")


def check_bind_address(host: str, allow_remote: bool) -> None:
    """Loopback only, unless the user asked for more: the owner's API key opens everything."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError as error:
        raise ServeError(f"--host {host!r} is not an IP address (use 127.0.0.1, or an address of this machine)") from error
    if not loopback and not allow_remote:
        raise ServeError(
            f"refusing to bind {host}: that exposes Argilla beyond this machine. "
            "Pass --allow-remote as well if that is what you want (and put TLS in front of it)."
        )


def local_api_url(host: str, port: int) -> str:
    """The URL clients on this machine use (a wildcard bind is reached through loopback)."""
    reach = "127.0.0.1" if host in ("0.0.0.0", "::", "localhost") else host
    if ":" in reach:
        reach = f"[{reach}]"
    return f"http://{reach}:{port}"


def server_environment(
    config: ServeConfig, redis_url: str, code_path: Path, base: dict, database_url: Optional[str] = None
) -> dict:
    """The environment of every argilla-server process (server, worker, migration, users);
    `database_url` None means SQLite at DIR/argilla.db."""
    env = {k: v for k, v in base.items() if not k.startswith("ARGILLA_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    data_dir = config.data_dir.resolve()
    env.update(
        ARGILLA_HOME_PATH=str(data_dir),
        ARGILLA_DATABASE_URL=database_url or f"sqlite+aiosqlite:///{data_dir / 'argilla.db'}",
        ARGILLA_REDIS_URL=redis_url,
        PYTHONPATH=str(code_path),
        # Offline and private: no Hugging Face telemetry or hub calls from the server.
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_OFFLINE="1",
    )
    if config.elasticsearch:
        env.update(ARGILLA_SEARCH_ENGINE="elasticsearch", ARGILLA_ELASTICSEARCH=config.elasticsearch)
    else:
        env.update(ARGILLA_SEARCH_ENGINE="embedded")
    return env


class ChildProcesses:
    """The processes `serve` started, each in its own process group, stopped in reverse order;
    recorded in DIR/processes.json while they run, for `annotation stop` after a killed `serve`."""

    def __init__(self, data_dir: Path, log_dir: Path):
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.children: list = []  # (name, Popen)
        self.records: dict = {}  # pid -> RecordedProcess (with the signal that stops it cleanly)

    def start(self, name: str, argv: list, env: dict, stop_signal=signal.SIGTERM, **popen_options) -> subprocess.Popen:
        log_file = open(self.log_dir / f"{name}.log", "ab")
        process = subprocess.Popen(
            argv, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            **popen_options,
        )
        log_file.close()
        self.children.append((name, process))
        self.records[process.pid] = record_for(name, process.pid, stop_signal)
        write_records(self.data_dir, list(self.records.values()))
        return process

    def forget(self, name: str, process: subprocess.Popen) -> None:
        """Kill a child that failed to start, and forget it."""
        self.children.remove((name, process))
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        del self.records[process.pid]
        write_records(self.data_dir, list(self.records.values()))

    def first_dead(self) -> Optional[str]:
        return next((name for name, process in self.children if process.poll() is not None), None)

    def log_tail(self, name: str, lines: int = 25) -> str:
        text = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, grace_s: float = 15) -> None:
        """Stop the worker, then the server, then the database and Redis: each after the one that needs it."""
        for _, process in reversed(self.children):
            if process.poll() is None:
                os.killpg(process.pid, self.records[process.pid].stop_signal)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.children.clear()
        self.records.clear()
        clear_records(self.data_dir)


def _run_server_cli(python: Path, commands: list, env: dict, log_path: Path, secrets_to_hide=()) -> str:
    """Run argilla-server CLI commands (each an argv list) in one server-venv process; its output."""
    result = subprocess.run(
        [str(python), "-m", "annotation.server.argilla_process.launch", "--each"],
        input=json.dumps(commands),
        env=env,
        capture_output=True,
        text=True,
    )
    names = ", ".join(" ".join(command[:3]) for command in commands)
    output = result.stdout + result.stderr
    for secret in secrets_to_hide:  # argilla-server echoes the new user's API key
        output = output.replace(secret, "<in credentials.json>")
    with open(log_path, "a") as log:
        log.write(f"$ argilla_server: {names}\n{output}\n")
    if result.returncode != 0:
        tail = "\n".join(output.splitlines()[-20:])
        raise ServeError(f"argilla-server's {names} failed (log: {log_path}):\n{tail}")
    return result.stdout


def _start_redis(children: ChildProcesses, data_dir: Path) -> str:
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(exist_ok=True)
    for _ in range(3):  # another program may take the free port between our look and Redis' bind
        port = free_loopback_port()
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(redis_dir)]
        try:
            process = children.start("redis", argv, env=dict(os.environ))
        except FileNotFoundError as error:
            raise ServeError(
                "redis-server is not installed (Debian: apt-get install redis-server), "
                "or point ARGILLA_REDIS_URL at a Redis you run"
            ) from error
        for _ in range(50):
            if process.poll() is not None:
                break
            if _redis_answers(port):
                return f"redis://127.0.0.1:{port}/0"
            time.sleep(0.1)
        children.forget("redis", process)
    raise ServeError(f"redis-server did not start; see {children.log_dir / 'redis.log'}")


def _start_postgres(children: ChildProcesses, data_dir: Path, log) -> str:
    """The cluster under DIR/postgres, created on first use, on a free loopback port; its URL."""
    cluster = LocalCluster(data_dir)
    password = cluster.prepare(log)
    for _ in range(3):  # another program may take the free port between our look and the bind
        port = free_loopback_port()
        # SIGINT: PostgreSQL's fast shutdown (SIGTERM would wait for every client to leave)
        process = children.start("postgres", cluster.argv(port), dict(os.environ), signal.SIGINT, **cluster.popen_options())
        if cluster.wait_ready(port, process):
            cluster.create_database(port, password)
            return cluster_url(password, port)
        children.forget("postgres", process)
    raise ServeError(f"PostgreSQL did not start; see {children.log_dir / 'postgres.log'}")


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _prepare_database(config: ServeConfig, api_url: str, python: Path, env: dict, log_path: Path) -> Credentials:
    """Migrate the database and return the owner's credentials: kept from an earlier start, or
    those of a new owner with a random password and API key (never Argilla's defaults)."""
    migrate = ["database", "migrate"]
    final = config.data_dir / CREDENTIALS_FILE
    pending = config.data_dir / PENDING_OWNER_FILE
    for path in (final, pending):
        if path.exists():
            _run_server_cli(python, [migrate], env, log_path)
            kept = Credentials.from_file(path)
            return Credentials(api_url, kept.username, kept.password, kept.api_key, kept.workspace)
    credentials = Credentials(
        api_url=api_url,
        username=OWNER_USERNAME,
        password=secrets.token_urlsafe(18),
        api_key=secrets.token_urlsafe(32),
        workspace=config.workspace,
    )
    write_private_json(pending, credentials.as_dict())  # before the user exists: never a lost password
    create_owner = ["database", "users", "create", "--username", OWNER_USERNAME, "--role", "owner"]
    create_owner += ["--first-name", "Owner", "--password", credentials.password, "--api-key", credentials.api_key]
    create_owner += ["--workspace", config.workspace]
    output = _run_server_cli(python, [migrate, create_owner], env, log_path, secrets_to_hide=[credentials.api_key])
    if "already exists" in output:
        pending.unlink()
        raise ServeError(
            f"{config.data_dir} holds an Argilla database with an owner, but its {CREDENTIALS_FILE} is gone. "
            f"Restore that file, or start on a new --data-dir."
        )
    return credentials


def _wait_until_ready(credentials: Credentials, children: ChildProcesses) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    request = urllib.request.Request(
        f"{credentials.api_url}/api/v1/me", headers={"X-Argilla-Api-Key": credentials.api_key}
    )
    while time.monotonic() < deadline:
        dead = children.first_dead()
        if dead:
            raise ServeError(f"{dead} stopped while starting; last lines of its log:\n{children.log_tail(dead)}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            if error.code in (401, 403):
                raise ServeError(
                    f"the server rejects the owner's API key from {CREDENTIALS_FILE}; was the database replaced?"
                ) from error
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise ServeError(f"argilla-server did not answer within {READY_TIMEOUT_S}s; last lines:\n{children.log_tail('server')}")


@dataclass
class RunningServer:
    credentials: Credentials
    children: ChildProcesses
    database: DatabaseChoice

    def problem(self) -> Optional[str]:
        """Why the server cannot go on (one of its processes stopped unasked), or None."""
        dead = self.children.first_dead()
        return dead and f"{dead} stopped unexpectedly; last lines of its log:\n{self.children.log_tail(dead)}"


@contextmanager
def running_server(config: ServeConfig, log: Callable[[str], None] = print) -> Iterator[RunningServer]:
    """Start everything, yield it while it runs, stop everything after."""
    from annotation.server.background import claim_pid_file, live_serve_pid, release_pid_file

    check_bind_address(config.host, config.allow_remote)
    check_port(config.port)
    running = live_serve_pid(config.data_dir)
    if running:
        raise ServeError(
            f"an Argilla already runs on {config.data_dir} (serve, pid {running}); "
            f"stop it first: python -m annotation stop --data-dir {config.data_dir}"
        )
    left = leftovers(config.data_dir)
    if left:
        raise ServeError(
            f"the last serve on {config.data_dir} was killed and left {describe(left)} running; "
            f"stop them first: python -m annotation stop --data-dir {config.data_dir}"
        )
    if port_in_use(config.host, config.port):
        raise ServeError(f"port {config.port} on {config.host} is already in use (another Argilla?); choose --port")
    python = ensure_server(config.server_venv, log=log)
    # The database holds every user's API key: the whole directory is for its owner only.
    config.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.data_dir, 0o700)
    log_dir = config.data_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    os.chmod(log_dir, 0o700)
    database = choose_database(config.data_dir, config.database, config.database_url)
    claim_pid_file(config.data_dir)
    code_path = _code_path(config.data_dir)
    api_url = local_api_url(config.host, config.port)

    children = ChildProcesses(config.data_dir, log_dir)
    try:
        redis_url = config.redis_url or _start_redis(children, config.data_dir)
        database_url = _start_database(database, children, config.data_dir, log)
        env = server_environment(config, redis_url, code_path, dict(os.environ), database_url)
        credentials = _prepare_database(config, api_url, python, env, log_dir / "setup.log")
        record_database(config.data_dir, database)
        launch = [str(python), "-m", "annotation.server.argilla_process.launch"]
        children.start("server", launch + ["start", "--host", config.host, "--port", str(config.port)], env)
        children.start("worker", launch + ["worker", "--num-workers", "1"], env)
        _wait_until_ready(credentials, children)
        write_private_json(config.data_dir / CREDENTIALS_FILE, credentials.as_dict())
        (config.data_dir / PENDING_OWNER_FILE).unlink(missing_ok=True)
        yield RunningServer(credentials, children, database)
    finally:
        children.stop()
        release_pid_file(config.data_dir)


def _start_database(database: DatabaseChoice, children: ChildProcesses, data_dir: Path, log) -> Optional[str]:
    """The database URL for argilla-server (None: SQLite in the data directory)."""
    if database.kind == "postgresql":
        return _start_postgres(children, data_dir, log)
    return database.url


def _code_path(data_dir: Path) -> Path:
    """A directory holding only the `annotation` package, for the server venv's PYTHONPATH."""
    shim = data_dir / "server-code"
    shim.mkdir(exist_ok=True)
    link = shim / "annotation"
    target = Path(__file__).resolve().parents[1]  # annotation/, this file being annotation/server/lifecycle.py
    if link.is_symlink() and link.resolve() != target:
        link.unlink()
    if not link.exists():
        link.symlink_to(target, target_is_directory=True)
    return shim


def serve_forever(config: ServeConfig) -> None:
    """The CLI: start, say where it runs and what to do next, wait for Ctrl-C, SIGTERM or `stop`."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    with running_server(config) as server:
        credentials, data_dir = server.credentials, config.data_dir
        engine = f"Elasticsearch at {config.elasticsearch}" if config.elasticsearch else "embedded"
        print(f"Argilla is running at {credentials.api_url}  (search engine: {engine}; "
              f"database: {server.database.describe()})")
        print(f"Owner credentials: {data_dir / CREDENTIALS_FILE} (readable only by you; log in as "
              f"{credentials.username!r} with the password stored there)")
        print(f"Logs: {data_dir / 'logs'}")
        print("Next:")
        print(f"  python -m annotation users add alice --password '<a password>' --data-dir {data_dir}")
        print(f"  python -m annotation push pairs.jsonl --dataset my-preferences --data-dir {data_dir}")
        print(f"Stop with Ctrl-C, or: python -m annotation stop --data-dir {data_dir}", flush=True)
        try:
            while not stop:
                problem = server.problem()
                if problem:
                    raise ServeError(problem)
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    print("Argilla stopped.", flush=True)
