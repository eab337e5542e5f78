"""Weights from an RL trainer into a running vLLM server over gloo (TCP): the server's `gloo` weight-transfer
backend (`align.serve --rl-weight-sync --rl-weight-sync-backend gloo`), for trainers where NCCL cannot carry them.

TRL 1.16's server mode moves weights over vLLM's NCCL engine, which needs CUDA on both sides and two distinct GPUs
(NCCL refuses two ranks on one device: a trainer and a server sharing one GPU cannot use it); vLLM 0.32 has no
engine without CUDA (vllm/distributed/weight_transfer/factory.py). Here the bytes go through host memory and TCP:
any device on either side, slower than NCCL between GPUs (a device-to-host copy on the trainer, one host-to-device
on the server).

The wire: the trainer is rank 0 of a gloo group it hosts (a `torch.distributed.TCPStore` at `master_address:
master_port`); each vLLM worker joins as `rank_offset` + its rank among the server's workers. An update announces
every tensor's name, dtype and shape (one HTTP request, vLLM's `/update_weights`), then the trainer broadcasts their
bytes packed into buffers of at most `chunk_bytes`, which both sides cut at the same tensors (`chunk_layout`), each
tensor's bytes starting at a multiple of `ALIGN` (a byte buffer is viewed as a dtype only at offsets its element
size divides).

Only torch here: the trainer imports it without vLLM's internals; the server's engine class, which plugs into vLLM,
is `align.serve.vllm_adapter.GlooWeightTransferEngine`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import timedelta

import torch
import torch.distributed as dist

BACKEND = "gloo"
# Per broadcast. The trainer holds about twice this in host memory (the chunk's copies and their packed buffer), a
# worker once; a tensor larger than this goes alone.
CHUNK_BYTES = 256 * 2**20
# A rendezvous or one chunk's broadcast stuck longer has lost its peer. A peer whose process ends fails the other's
# broadcast at once (gloo: "Connection closed by peer"), and a worker whose load fails still receives the rest of
# the update (`GlooWeightTransferEngine.receive_weights`): this bounds only a peer that hangs.
GROUP_TIMEOUT = timedelta(minutes=5)
ALIGN = 16  # bytes: a multiple of every dtype's element size
POLL_SECONDS = 0.05


def host_group(master_address: str, master_port: int, world_size: int,
               check_peers: Callable[[], None]) -> dist.ProcessGroupGloo:
    """The trainer's end (rank 0), outside torch.distributed's default group (the trainer's own ranks keep theirs):
    it hosts the store and waits for the `world_size - 1` workers to arrive, calling `check_peers` meanwhile, which
    raises when they will not come (the server refused `/init_weight_transfer_engine`): no wait for the timeout."""
    store = dist.TCPStore(master_address, master_port, world_size, is_master=True, timeout=GROUP_TIMEOUT,
                          wait_for_workers=False)
    arrivals = [f"arrived/{rank}" for rank in range(1, world_size)]
    deadline = time.monotonic() + GROUP_TIMEOUT.total_seconds()
    while not store.check(arrivals):
        check_peers()
        if time.monotonic() > deadline:
            raise TimeoutError(f"gloo weight transfer: the server's workers did not join {master_address}:"
                               f"{master_port} within {GROUP_TIMEOUT}")
        time.sleep(POLL_SECONDS)
    return _group(store, 0, world_size)


def join_group(master_address: str, master_port: int, rank: int, world_size: int) -> dist.ProcessGroupGloo:
    """A worker's end: rank `rank` of the group the trainer hosts (`host_group`)."""
    store = dist.TCPStore(master_address, master_port, world_size, is_master=False, timeout=GROUP_TIMEOUT)
    store.set(f"arrived/{rank}", "1")
    return _group(store, rank, world_size)


def _group(store: dist.TCPStore, rank: int, world_size: int) -> dist.ProcessGroupGloo:
    return dist.ProcessGroupGloo(dist.PrefixStore("klear-weight-transfer", store), rank, world_size, GROUP_TIMEOUT)


def nbytes(dtype_name: str, shape) -> int:
    """A tensor's size in bytes from its announced dtype name (vLLM style, "bfloat16") and shape."""
    return math.prod(shape) * getattr(torch, dtype_name).itemsize


def _slot(size: int) -> int:
    """A tensor's bytes in a packed buffer, padded so that the next one starts aligned."""
    return -(-size // ALIGN) * ALIGN


def chunk_layout(dtype_names: list[str], shapes: list[list[int]], chunk_bytes: int = CHUNK_BYTES) -> list[range]:
    """Consecutive tensors packed into one broadcast while they fit in `chunk_bytes`; one larger than that goes
    alone. Pure: the trainer and every worker compute the same cuts from the announced metadata."""
    chunks, start, size = [], 0, 0
    for index, (dtype_name, shape) in enumerate(zip(dtype_names, shapes, strict=True)):
        tensor_bytes = _slot(nbytes(dtype_name, shape))
        if index > start and size + tensor_bytes > chunk_bytes:
            chunks.append(range(start, index))
            start, size = index, 0
        size += tensor_bytes
    if start < len(shapes):
        chunks.append(range(start, len(shapes)))
    return chunks


def _broadcast(group: dist.ProcessGroupGloo, buffer: torch.Tensor) -> None:
    # The backend's own call: the group was never registered with torch.distributed, so dist.broadcast cannot name it.
    options = dist.BroadcastOptions()
    options.rootRank = 0
    group.broadcast([buffer], options).wait()


def send(group: dist.ProcessGroupGloo, tensors: list[torch.Tensor]) -> None:
    """Rank 0: one chunk's tensors, in announced order, as one buffer of their bytes (each in its aligned slot)."""
    flat = [tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8) for tensor in tensors]
    buffer = torch.zeros(sum(_slot(part.numel()) for part in flat), dtype=torch.uint8)
    offset = 0
    for part in flat:
        buffer[offset:offset + part.numel()] = part
        offset += _slot(part.numel())
    _broadcast(group, buffer)


def receive(group: dist.ProcessGroupGloo, dtype_names: list[str], shapes: list[list[int]]) -> list[torch.Tensor]:
    """A worker: one chunk's tensors, as `send` packed them (views into one host buffer)."""
    sizes = [nbytes(dtype_name, shape) for dtype_name, shape in zip(dtype_names, shapes, strict=True)]
    buffer = torch.empty(sum(_slot(size) for size in sizes), dtype=torch.uint8)
    _broadcast(group, buffer)
    tensors, offset = [], 0
    for size, dtype_name, shape in zip(sizes, dtype_names, shapes, strict=True):
        tensors.append(buffer[offset:offset + size].view(getattr(torch, dtype_name)).reshape(shape))
        offset += _slot(size)
    return tensors


def receive_chunks(group: dist.ProcessGroupGloo, dtype_names: list[str], shapes: list[list[int]],
                   chunk_bytes: int = CHUNK_BYTES):
    """A worker: the announced tensors chunk by chunk, as (the chunk's indices, its tensors), in the cuts the
    trainer sends (`chunk_layout`)."""
    for chunk in chunk_layout(dtype_names, shapes, chunk_bytes):
        yield chunk, receive(group, [dtype_names[i] for i in chunk], [shapes[i] for i in chunk])
