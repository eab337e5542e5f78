"""Running the stages for real: `accelerate launch` with 2 CPU processes (gloo, ZeRO-3, expert parallel 2)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from align.common.ports import free_loopback_port

REPO_ROOT = Path(__file__).resolve().parent.parent
CPU_2PROC = REPO_ROOT / "configs/accelerate/cpu-2proc.yaml"


def launch_command(target: list[str], args: list[str], config: Path = CPU_2PROC) -> list[str]:
    """`target` is `["-m", "align.sft"]` or `["path/to/script.py"]`; `config` the accelerate launcher config."""
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(config), "--main_process_port", str(free_loopback_port()),
        *target, *args,
    ]


def env() -> dict:
    return {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def run_2proc(target: list[str], args: list[str], log: Path, timeout: int = 600, config: Path = CPU_2PROC,
              check: bool = True) -> subprocess.CompletedProcess:
    with log.open("w") as out:
        done = subprocess.run(
            launch_command(target, args, config), cwd=REPO_ROOT, env=env(), stdout=out, stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    if check and done.returncode != 0:
        raise AssertionError(f"launch failed ({done.returncode}); last lines of {log}:\n" + tail(log))
    return done


def kill_hard(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher and every process under it. Its process group is not enough: torch's elastic agent
    starts each rank in a session of its own, and ranks outliving the launcher train on to the end."""
    import psutil

    workers = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)
    for worker in workers:
        try:
            worker.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(workers, timeout=30)
    proc.wait()


def run_2proc_until(target: list[str], args: list[str], log: Path, stop_when, timeout: int = 600) -> None:
    """Start a run and kill it hard (`kill_hard`: the launcher and its ranks) as soon as `stop_when()` holds."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            launch_command(target, args), cwd=REPO_ROOT, env=env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + timeout
        while not stop_when():
            if proc.poll() is not None:
                raise AssertionError(f"the run ended ({proc.returncode}) before it could be killed:\n" + tail(log))
            if time.time() > deadline:
                kill_hard(proc)
                raise AssertionError("the kill condition never held:\n" + tail(log))
            time.sleep(0.05)
        kill_hard(proc)


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
