"""The gloo weight-transfer wire (align.serve.weight_transfer) between two real processes on loopback: the chunk
cuts both sides compute, tensors of every kind a policy holds arriving bit for bit, and a failing side never
leaving the other waiting."""

import multiprocessing

import pytest
import torch

from align.common.ports import free_loopback_port
from align.serve import weight_transfer

# a 0-d tensor, bf16, a non-contiguous view, an int buffer, one tensor over the chunk budget
SENT = {
    "scalar": torch.tensor(3.25),
    "bf16": torch.randn(7, 5, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16),
    "transposed": torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),
    "counts": torch.arange(10, dtype=torch.int64),
    "large": torch.randn(300, generator=torch.Generator().manual_seed(1)),
}
CHUNK_BYTES = 512


def metadata():
    return [str(t.dtype).removeprefix("torch.") for t in SENT.values()], [list(t.shape) for t in SENT.values()]


def receiver(port, results):
    group = weight_transfer.join_group("127.0.0.1", port, 1, 2)
    dtype_names, shapes = metadata()
    received = [tensor for _, tensors in weight_transfer.receive_chunks(group, dtype_names, shapes, CHUNK_BYTES)
                for tensor in tensors]
    results.put([t.clone() for t in received])


def alive(process):
    """`host_group`'s check: the receiver's process has not ended."""
    def check():
        if process.exitcode is not None:
            raise RuntimeError(f"the receiver ended with {process.exitcode}")
    return check


def test_chunks_are_cut_at_the_same_tensors_and_a_large_one_goes_alone():
    dtype_names, shapes = metadata()  # 4 + 70 + 48 + 80 + 1200 bytes, in slots of 16, 80, 48, 80, 1200
    assert weight_transfer.chunk_layout(dtype_names, shapes, CHUNK_BYTES) == [range(0, 4), range(4, 5)]
    assert weight_transfer.chunk_layout(dtype_names, shapes, 100) == [range(0, 2), range(2, 3), range(3, 4),
                                                                      range(4, 5)]
    assert weight_transfer.chunk_layout([], [], 100) == []


def test_every_tensor_arrives_bit_for_bit_in_its_dtype_and_shape():
    port = free_loopback_port()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    worker = context.Process(target=receiver, args=(port, results))
    worker.start()
    try:
        group = weight_transfer.host_group("127.0.0.1", port, 2, check_peers=alive(worker))
        dtype_names, shapes = metadata()
        tensors = list(SENT.values())
        for chunk in weight_transfer.chunk_layout(dtype_names, shapes, CHUNK_BYTES):
            weight_transfer.send(group, [tensors[i] for i in chunk])
        received = results.get(timeout=60)
    finally:
        worker.join(timeout=60)
        if worker.is_alive():
            worker.kill()
    assert worker.exitcode == 0
    for (name, sent), got in zip(SENT.items(), received, strict=True):
        assert got.dtype == sent.dtype and got.shape == sent.shape and torch.equal(got, sent), name


def test_the_host_stops_waiting_when_its_peers_will_not_come():
    def refused():
        raise RuntimeError("HTTP 500 from /init_weight_transfer_engine")

    with pytest.raises(RuntimeError, match="HTTP 500"):
        weight_transfer.host_group("127.0.0.1", free_loopback_port(), 2, check_peers=refused)

