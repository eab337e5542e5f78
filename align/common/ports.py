"""Loopback ports for the servers the project starts (vLLM, transformers serve, Argilla, Redis, PostgreSQL)."""

from __future__ import annotations

import socket


def free_loopback_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now. Another process can take it before ours binds it; the servers that
    use it fail then with 'address in use', which their callers report."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts connections on `host:port` (a wildcard address is checked on loopback)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host if host not in ("0.0.0.0", "::") else "127.0.0.1", port)) == 0
