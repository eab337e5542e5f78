"""`python -m align.serve CHECKPOINT`: an OpenAI-compatible server for a Klear checkpoint, on vLLM.

    python -m align.serve outputs/sft                               # http://127.0.0.1:8000/v1
    python -m align.serve outputs/sft --port 0                      # any free port
    python -m align.serve /ckpt/Klear-46B --tensor-parallel-size 8  # a GPU node; expert parallel on
    python -m align.serve outputs/sft --max-model-len 8192          # other options go to `vllm serve`
    python -m align.serve outputs/sft --rl-weight-sync              # for align.rl's `vllm_mode: server`
    python -m align.serve outputs/sft --rl-weight-sync --rl-weight-sync-backend gloo  # ... beside the trainer

It runs stock `vllm serve` (the `klear` plugin registers the model; no --trust-remote-code),
listens on loopback unless told otherwise, and prints the base URL once the server answers. With
more than one GPU the MoE layers use expert parallelism (`--enable-expert-parallel`): each GPU
holds whole experts instead of a slice of every expert. On vLLM's CPU build the KV cache is
bounded (VLLM_CPU_KVCACHE_SPACE, default 4 GiB; vLLM's own default takes 90% of memory), several
tensor-parallel workers share this process's cores (VLLM_CPU_OMP_THREADS_BIND, unless set), expert
parallelism is left off (that build cannot run it), and a head size its attention lacks is refused.

`--rl-weight-sync` serves as TRL 1.16's trainers expect of a `vllm_mode: server` generator (what
`trl vllm-serve` adds to `vllm serve`): vLLM's development endpoints (VLLM_SERVER_DEV_MODE=1: weight
updates, prefix-cache reset, server info; anyone who reaches the port can replace the weights, so keep
it on loopback or a private network), a weight-transfer engine, and log-probabilities after
temperature (TRL's importance-sampling correction compares them with the trainer's). The engine is
vLLM's `nccl` (TRL's; CUDA on both sides, distinct GPUs) by default on GPUs and our `gloo`
(`align.serve.weight_transfer`: any device, through host memory) on the CPU build; `--rl-weight-sync-backend
gloo` picks it on GPUs too, e.g. for a trainer on the server's GPU, where NCCL cannot run. See docs/rl.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from align.common.ports import free_loopback_port

from .environment import cpu_build, expert_parallel_unsupported, vllm_environment, vllm_installed, vllm_unsupported

DEFAULT_PORT = 8000  # vLLM's
VLLM_SERVE = ["-m", "vllm.entrypoints.cli.main", "serve"]  # `vllm serve`
# vllm-cpu 0.32.0's `vllm` command dies at startup: it asks for the version of a distribution named
# "vllm" (PackageNotFoundError). Its OpenAI server module itself is fine and takes the same options.
VLLM_CPU_SERVER = ["-m", "vllm.entrypoints.openai.api_server", "--model"]
# What `trl vllm-serve` (trl/scripts/vllm_serve.py, `build_command` and `main`) adds for TRL's VLLMClient;
# its `--enable-scale-out` serves multimodal prompts only, which a Klear never sends.
RL_WEIGHT_SYNC_BACKENDS = ("nccl", "gloo")
RL_WEIGHT_SYNC_ENV = {"VLLM_SERVER_DEV_MODE": "1"}


class ServeError(RuntimeError):
    pass


def check_checkpoint(checkpoint: str | Path) -> Path:
    path = Path(checkpoint)
    if not (path / "config.json").is_file():
        raise ServeError(f"{path}: not a model directory (no config.json)")
    return path


def check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on: vLLM would fail to bind, and a readiness check would
    be talking to that other server."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: only a listener blocks
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ServeError(f"{host}:{port} is already in use ({err.strerror}); "
                             "choose another --port, or 0 for any free one") from None


def resolve_expert_parallel(tensor_parallel_size: int, asked: bool | None) -> tuple[bool, str | None]:
    """(expert parallel on?, a note to print): on by default above one device, off where vLLM cannot run it."""
    wanted = tensor_parallel_size > 1 if asked is None else asked
    reason = expert_parallel_unsupported() if wanted else None
    if reason:
        return False, f"{reason}: serving tensor parallel alone"
    return wanted, None


def serve_command(
    checkpoint: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    tensor_parallel_size: int = 1,
    expert_parallel: bool | None = None,
    served_model_name: str | None = None,
    rl_weight_sync: bool = False,
    rl_weight_sync_backend: str | None = None,
    extra_args: list[str] = (),
) -> list[str]:
    """The `vllm serve` command line; expert parallelism defaults to on when there is more than one GPU.
    `rl_weight_sync`: the options TRL's server-mode trainers need (`rl_weight_sync_args`, over
    `rl_weight_sync_backend`, one of RL_WEIGHT_SYNC_BACKENDS or "auto", the default; the environment's part is
    RL_WEIGHT_SYNC_ENV). A backend without `rl_weight_sync` is refused, as the command line refuses it."""
    if expert_parallel is None:
        expert_parallel = tensor_parallel_size > 1
    command = [
        sys.executable, *(VLLM_CPU_SERVER if cpu_build() else VLLM_SERVE), str(checkpoint),
        "--host", host, "--port", str(port),
        "--served-model-name", served_model_name or Path(checkpoint).resolve().name,
        "--tensor-parallel-size", str(tensor_parallel_size),
    ]
    if expert_parallel:
        command.append("--enable-expert-parallel")
    if rl_weight_sync:
        command += rl_weight_sync_args(rl_weight_sync_backend or "auto")
    elif rl_weight_sync_backend:
        raise ServeError(f"--rl-weight-sync-backend {rl_weight_sync_backend} needs --rl-weight-sync")
    return command + list(extra_args)


def rl_weight_sync_args(backend: str) -> list[str]:
    """`trl vllm-serve`'s additions (trl/scripts/vllm_serve.py, `build_command`), with the weight-transfer backend
    chosen: "auto" is gloo on vLLM's CPU build (it has no NCCL), nccl elsewhere."""
    if backend == "auto":
        backend = "gloo" if cpu_build() else "nccl"
    if backend not in RL_WEIGHT_SYNC_BACKENDS:
        raise ServeError(f"--rl-weight-sync-backend {backend}: not a weight-transfer backend; choose one of "
                         f"{', '.join(RL_WEIGHT_SYNC_BACKENDS)}")
    return ["--weight-transfer-config", json.dumps({"backend": backend}), "--logprobs-mode", "processed_logprobs",
            "--max-logprobs", "-1"]


class VLLMServer:
    """A `vllm serve` child process for a Klear checkpoint; a context manager that waits until it answers.

        with VLLMServer("outputs/sft", log_path="serve.log") as server:
            EndpointBackend(server.base_url, server.model) ...
    """

    def __init__(self, checkpoint: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                 tensor_parallel_size: int = 1, expert_parallel: bool | None = None,
                 served_model_name: str | None = None, rl_weight_sync: bool = False,
                 rl_weight_sync_backend: str | None = None, extra_args: list[str] = (),
                 log_path: str | Path | None = None, env: dict[str, str] | None = None,
                 startup_timeout_s: float = 900.0):
        if not vllm_installed():
            raise ServeError("vLLM is not installed: `make install` (CPU) or `pip install 'klear-align[vllm]'` (GPU)")
        self.checkpoint = check_checkpoint(checkpoint)
        unsupported = vllm_unsupported(self.checkpoint)
        if unsupported:
            raise ServeError(f"{self.checkpoint}: {unsupported}; it cannot be served here")
        # vLLM would refuse these deep in its own start-up (a pydantic traceback), or the bind probe (OverflowError)
        if not 0 <= port <= 65535:
            raise ServeError(f"--port must be between 0 (any free port) and 65535, not {port}")
        if tensor_parallel_size < 1:
            raise ServeError(f"--tensor-parallel-size must be at least 1, not {tensor_parallel_size}")
        self.host = host
        if port:
            check_port_free(host, port)
        self.port = port or free_loopback_port(host)
        expert_parallel, note = resolve_expert_parallel(tensor_parallel_size, expert_parallel)
        self.notes = [note] if note else []
        self.model = served_model_name or self.checkpoint.resolve().name
        self.command = serve_command(self.checkpoint, host=host, port=self.port,
                                     tensor_parallel_size=tensor_parallel_size, expert_parallel=expert_parallel,
                                     served_model_name=self.model, rl_weight_sync=rl_weight_sync,
                                     rl_weight_sync_backend=rl_weight_sync_backend, extra_args=extra_args)
        self.log_path = Path(log_path) if log_path else None
        # vLLM logs to stdout, block-buffered when that is a file: unbuffered, a log shows what the server did
        # so far. Its INFO lines say which model class and routing it chose; importing TRL (trl/_compat.py)
        # sets VLLM_LOGGING_LEVEL=ERROR in this process's environment, which a server started from a training
        # process (or a test session) would inherit. KLEAR_VLLM_LOGGING_LEVEL chooses another level.
        try:
            vllm_env = vllm_environment(env, tensor_parallel_size=tensor_parallel_size)
        except ValueError as err:
            raise ServeError(str(err)) from None
        self.env = {**vllm_env, "PYTHONUNBUFFERED": "1",
                    "VLLM_LOGGING_LEVEL": os.environ.get("KLEAR_VLLM_LOGGING_LEVEL", "INFO"),
                    **(RL_WEIGHT_SYNC_ENV if rl_weight_sync else {})}
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen | None = None
        self._log: IO | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}/v1"

    def start(self) -> "VLLMServer":
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "w", encoding="utf-8")
        self.process = subprocess.Popen(self.command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT if self._log else None)
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise ServeError(f"vllm serve {self.checkpoint} exited with code {self.process.returncode} "
                                 f"before answering{self._log_hint()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=5) as response:
                    if self.model in {m["id"] for m in json.load(response)["data"]}:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            except (ValueError, KeyError, TypeError) as err:  # not vLLM's answer: another server took the port
                self.stop()
                raise ServeError(f"{self.base_url}/models answered, but not as vLLM does ({type(err).__name__}): "
                                 "another server listens on that port; choose another --port, or 0") from None
            time.sleep(1.0)
        self.stop()
        raise ServeError(f"vllm serve {self.checkpoint} did not answer within {self.startup_timeout_s:.0f} s{self._log_hint()}")

    def _log_hint(self) -> str:
        if not self.log_path:
            return " (its output is above)"
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return f"; last lines of {self.log_path}:\n" + "\n".join(lines[-20:])

    def stop(self, timeout_s: float = 60.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # vLLM shuts its engine and worker processes down on SIGTERM
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> "VLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m align.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a Klear model directory (Hugging Face format, official key names)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free port)")
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="GPUs to spread the model over (8 on a node for Klear-46B)")
    parser.add_argument("--expert-parallel", action=argparse.BooleanOptionalAction, default=None,
                        help="whole experts per GPU instead of slices of every expert (default: on with more than one GPU)")
    parser.add_argument("--served-model-name", help="the model name clients send (default: the directory's name)")
    parser.add_argument("--rl-weight-sync", action="store_true",
                        help="serve align.rl's vllm_mode: server (TRL's weight-sync endpoints, through which anyone "
                             "reaching the port can replace the weights; docs/rl.md)")
    parser.add_argument("--rl-weight-sync-backend", choices=("auto", *RL_WEIGHT_SYNC_BACKENDS),
                        help="the weight-transfer backend of --rl-weight-sync (default auto: gloo on vLLM's CPU "
                             "build, nccl otherwise); refused without --rl-weight-sync, which it never implies: "
                             "that flag opens the weight endpoints, so it is always said")
    argv = sys.argv[1:] if argv is None else list(argv)
    # the flag once took the backend as its value: a backend's name after it would now pass for the checkpoint or
    # a `vllm serve` positional
    for flag, value in zip(argv, argv[1:]):
        if flag == "--rl-weight-sync" and value in ("auto", *RL_WEIGHT_SYNC_BACKENDS):
            parser.error(f"--rl-weight-sync takes no value: name the backend with --rl-weight-sync-backend {value}")
    args, extra = parser.parse_known_args(argv)
    if args.rl_weight_sync_backend and not args.rl_weight_sync:
        parser.error(f"--rl-weight-sync-backend {args.rl_weight_sync_backend} needs --rl-weight-sync")
    return args, extra


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM too runs main's `finally`: the vLLM server must not outlive us


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    try:
        server = VLLMServer(args.checkpoint, host=args.host, port=args.port,
                            tensor_parallel_size=args.tensor_parallel_size, expert_parallel=args.expert_parallel,
                            served_model_name=args.served_model_name, rl_weight_sync=args.rl_weight_sync,
                            rl_weight_sync_backend=args.rl_weight_sync_backend, extra_args=extra)
    except ServeError as err:
        print(f"align.serve: {err}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    for note in server.notes:
        print(f"align.serve: {note}", flush=True)
    print(f"starting: {' '.join(server.command)}", flush=True)
    try:
        server.start()
        print(f"\nKlear is served at {server.base_url}  (model name: {server.model!r}; OpenAI-compatible, "
              f"e.g. {server.base_url}/chat/completions). Ctrl-C stops it.\n", flush=True)
        return server.process.wait()
    except ServeError as err:
        print(f"align.serve: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
