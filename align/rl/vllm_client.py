"""TRL's `VLLMClient` for a server-mode generator (`align.rl.vllm_server`), speaking the server's `gloo`
weight-transfer backend (`align.serve.weight_transfer`) too. Imports vLLM (through TRL's client): only for
`vllm_mode: server`.

One trainer per server: a second trainer's `init_communicator` replaces the first one's group, and no other client
should send weights while a trainer does."""

from __future__ import annotations

import atexit
import os
import socket
import threading
from concurrent.futures import Future

import requests
from trl.generation.vllm_client import VLLMClient

from align.serve import weight_transfer


class KlearVLLMClient(VLLMClient):
    """TRL's client for a server-mode generator; its weight sync also speaks the server's `gloo` backend
    (`align.serve.weight_transfer`). With `nccl` it is TRL's own. TRL builds it (`compat.trl_vllm_generation`)."""

    gloo_group = None
    speaks_gloo = False  # the server's backend is ours: a closed group is never handed to TRL's NCCL path
    chunk_bytes = weight_transfer.CHUNK_BYTES  # per broadcast; the server learns it at `init_communicator`

    def init_communicator(self, device=0):
        info = self.get_server_info().get("weight_transfer_config") or {}
        if info.get("backend") != weight_transfer.BACKEND:
            return super().init_communicator(device)
        world_size = self.get_world_size() + 1  # the trainer is rank 0, the server's workers follow
        address = _address_towards(self.host)
        self.gloo_chunk_bytes = self.chunk_bytes  # both sides cut every update's chunks at the same tensors with it
        init_info = {"master_address": address, "master_port": self.group_port, "rank_offset": 1,
                     "world_size": world_size, "chunk_bytes": self.gloo_chunk_bytes}
        # the server's workers join the group while handling the request; a refused request ends the wait
        joined = _in_background(self._sync_call, "init_weight_transfer_engine", {"init_info": init_info})
        self.gloo_group = weight_transfer.host_group(address, self.group_port, world_size,
                                                     check_peers=lambda: _raise_if_failed(joined))
        joined.result(timeout=weight_transfer.GROUP_TIMEOUT.total_seconds())
        if not self.speaks_gloo:
            atexit.register(self.close_communicator)
        self.speaks_gloo = True

    def update_named_params(self, metadata, named_params):
        """As TRL's: announce the tensors, then stream them (collected per chunk as host copies: a ZeRO-3 walk
        frees each gathered parameter at the next step), inside one start/finish of the server's update (TRL's
        `weight_update()` may hold one open already)."""
        if not self.speaks_gloo:
            return super().update_named_params(metadata, named_params)
        if self.gloo_group is None:
            raise RuntimeError("weight sync: no gloo group to the server (closed, or dropped after a failed update): "
                               "call init_communicator again")
        names, dtype_names, shapes = (list(field) for field in zip(*metadata, strict=True))
        if not self._updating_weights:
            self._sync_call("start_weight_update", {})
        # the workers receive while handling the request: it runs on a daemon thread, so that an error here is not
        # held up waiting for it
        received = _in_background(self._sync_call, "update_weights",
                                  {"update_info": {"names": names, "dtype_names": dtype_names, "shapes": shapes}})
        stream = iter(named_params)
        try:
            for chunk in weight_transfer.chunk_layout(dtype_names, shapes, self.gloo_chunk_bytes):
                _raise_if_failed(received)  # the server stopped receiving: its error, not a stuck broadcast
                tensors = []
                for index in chunk:
                    name, tensor = next(stream)
                    if name != names[index]:
                        raise RuntimeError(f"weight sync: the walk yielded {name!r} where {names[index]!r} was "
                                           "announced")
                    tensors.append(tensor.detach().to("cpu", copy=True))
                weight_transfer.send(self.gloo_group, tensors)
            # run the walk to its end (a PEFT model unmerges its adapters after the last tensor)
            if (extra := next(stream, None)) is not None:
                raise RuntimeError(f"weight sync: the walk yielded {extra[0]!r} after the {len(names)} announced "
                                   "tensors")
            received.result(timeout=weight_transfer.GROUP_TIMEOUT.total_seconds())
        except BaseException:
            self._abandon_update(stream)
            raise
        if not self._updating_weights:
            self._sync_call("finish_weight_update", {})

    def close_communicator(self):
        if not self.speaks_gloo:
            return super().close_communicator()
        if self.gloo_group is None:
            return
        self.gloo_group = None
        try:  # the server drops its end; it may have stopped first
            self._sync_call("shutdown_weight_transfer_engine", {}, timeout=60)
        except (requests.RequestException, RuntimeError):
            pass

    def _abandon_update(self, stream) -> None:
        """After a failed update: the walk runs to its end (under ZeRO-3 the other ranks are in the same gathers;
        a PEFT model unmerges), the group is dropped (its broadcasts may no longer match the server's; closing it
        ends a receive the server still waits in), and the server's update is finished if it is still open, so that
        it takes the next one. The trainer connects again with `init_communicator`."""
        for _ in stream:
            pass
        self.gloo_group = None
        if not self._updating_weights:
            try:
                self._sync_call("finish_weight_update", {}, timeout=60)
            except (requests.RequestException, RuntimeError):
                pass  # no update open any more (the server refused it): nothing to finish

    def _sync_call(self, endpoint: str, payload: dict, timeout: float | None = None) -> None:
        """One weight-sync request, never retried (TRL's session retries a 500 on POST: a retried
        `/update_weights` would wait for a broadcast the trainer never repeats)."""
        response = requests.post(f"{self.base_url}/{endpoint}", json=payload, timeout=timeout)
        if response.status_code != 200:
            raise RuntimeError(f"vLLM server {self.base_url}/{endpoint}: HTTP {response.status_code}: "
                               f"{response.text[-2000:]}")


def _in_background(call, *args) -> Future:
    """`call(*args)` on a daemon thread (a ThreadPoolExecutor's would hold up the trainer's exit, and its error)."""
    future: Future = Future()

    def run():
        try:
            future.set_result(call(*args))
        except BaseException as error:  # noqa: BLE001  (handed to whoever reads the future)
            future.set_exception(error)

    threading.Thread(target=run, daemon=True).start()
    return future


def _raise_if_failed(future: Future) -> None:
    if future.done():
        future.result()  # raises the request's error
        raise RuntimeError("vLLM server: the weight-sync request returned before every weight was sent")


def _address_towards(host: str) -> str:
    """The address the server's workers reach the trainer's group at: `VLLM_HOST_IP` where set (vLLM's and TRL's
    variable), else this machine's address on the route to `host` (IPv4 or IPv6; a UDP connect sends nothing)."""
    if os.environ.get("VLLM_HOST_IP"):
        return os.environ["VLLM_HOST_IP"]
    family, _, _, _, address = socket.getaddrinfo(host, 9, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(address)
        return probe.getsockname()[0]
