"""Benchmark: one server-mode weight sync over gloo (align.serve.weight_transfer), against the bare wire.

    .venv/bin/python bench/weight_sync.py [--rounds 11] [--warmup-rounds 1] [--hidden 512] [--layers 4]
        [--experts 32] [--small-chunk-mib 8]

One `align.serve` server (`VLLMServer(..., rl_weight_sync=True, rl_weight_sync_backend="gloo")`, fp32, eager,
--max-model-len 256, the offline
engine in the server's process, a 1 GiB KV cache) serves a random tiny Klear (head_dim 64, 8 heads, 2 KV heads,
--layers of --experts experts of width --hidden / 2, 4 per token, 1 shared); this process holds the checkpoint's
tensors and pushes them, as a trainer does. Variants, interleaved (bench/harness.py: order rotated each round,
ratios within a round):
  broadcast  the floor, the baseline: the same bytes between this process and one plain peer process over a
             gloo group on loopback, `weight_transfer.send` / `receive` in the default chunks (256 MiB); no HTTP,
             no vLLM. Timed until the peer says it holds the last chunk.
  sync       one `KlearVLLMClient.update_named_params` of every tensor: /start_weight_update, /update_weights with
             the broadcast of every chunk and the server's `load_weights` per chunk (vLLM's layerwise reload
             processes each layer as its last tensor lands), /finish_weight_update (the reload's finalisation, the
             CPU build's expert prepacking, the completeness check).
  chunk-small  as broadcast, in chunks of --small-chunk-mib: whether the 256 MiB default matters on the wire. (On
             the sync itself it cannot be set: KlearVLLMClient sends no chunk_bytes, so both sides use the default.)
Both groups are opened once, before the rounds (the rendezvous is a start-up cost, not a sync's). Reported per
variant: seconds per sync and MB/s (10^6 bytes of the checkpoint's tensors per second); the ratio sync/broadcast is
what the HTTP requests, vLLM's reload and the prepacking cost on top of the wire; each of the sync's three requests
is timed too (from this side). Prints the harness's table, the requests' times and a JSON line. Every process
started here is stopped before it returns.
"""

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import harness  # bench/ is on the path when a bench script runs

METRICS = {"seconds": "lower", "mb_per_s": "higher"}
SERVER_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}  # the serving tests' settings
ENGINE_ARGS = ["--dtype", "float32", "--enforce-eager", "--max-model-len", "256"]


def model_config(hidden: int, layers: int, experts: int) -> dict:
    return dict(hidden_size=hidden, num_attention_heads=8, num_key_value_heads=2, head_dim=64,
                num_hidden_layers=layers, num_experts=experts, num_experts_per_tok=4,
                moe_intermediate_size=hidden // 2, intermediate_size=2 * hidden)


def peer(address: str, port: int, dtype_names: list[str], shapes: list[list[int]], conn) -> None:
    """The broadcast floor's receiver (its own process): joins the group, then for every chunk size it is sent
    receives the whole checkpoint in that size's chunks and answers; None ends it."""
    from align.serve import weight_transfer

    group = weight_transfer.join_group(address, port, 1, 2)
    conn.send("joined")
    while (chunk_bytes := conn.recv()) is not None:
        for _ in weight_transfer.receive_chunks(group, dtype_names, shapes, chunk_bytes):
            pass
        conn.send("received")


def measured(seconds: float, total_bytes: int) -> dict:
    return {"seconds": seconds, "mb_per_s": total_bytes / 1e6 / seconds}


def timed_requests(client) -> dict:
    """Wrap the client's weight-sync requests: the returned dict holds each endpoint's seconds in the last sync
    (`update_weights` spans the broadcast and the server's per-chunk loads; `finish_weight_update` the reload's
    finalisation and the prepacking)."""
    phases, request = {}, client._sync_call

    def timed(endpoint: str, payload: dict, **options) -> None:
        started = time.perf_counter()
        request(endpoint, payload, **options)
        phases[f"{endpoint}_s"] = time.perf_counter() - started

    client._sync_call = timed
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_arguments(parser, rounds=11, warmup_rounds=1)
    parser.add_argument("--hidden", type=int, default=512, help="hidden size (experts: half; shared expert: twice)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--experts", type=int, default=32)
    parser.add_argument("--small-chunk-mib", type=int, default=8, help="chunk-small's chunk size")
    args = parser.parse_args()

    from safetensors.torch import load_file

    from align.common.ports import free_loopback_port
    from align.models.klear.tiny import build_tiny_klear
    from align.rl.vllm_client import KlearVLLMClient
    from align.serve import weight_transfer
    from align.serve.server import VLLMServer

    config = model_config(args.hidden, args.layers, args.experts)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_klear(Path(tmp) / "klear", seed=0, **config)
        weights = {name: tensor for shard in sorted(model_dir.glob("*.safetensors"))
                   for name, tensor in load_file(shard).items()}
        metadata = [(name, str(t.dtype).removeprefix("torch."), list(t.shape)) for name, t in weights.items()]
        _, dtype_names, shapes = (list(field) for field in zip(*metadata))
        total_bytes = sum(t.numel() * t.element_size() for t in weights.values())
        print(f"model: {json.dumps(config)}; {len(weights)} tensors, {total_bytes / 1e6:.1f} MB", flush=True)

        address, port = "127.0.0.1", free_loopback_port()
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        receiver = context.Process(target=peer, args=(address, port, dtype_names, shapes, theirs))
        receiver.start()
        try:
            group = weight_transfer.host_group(address, port, 2, check_peers=lambda: None)
            assert ours.recv() == "joined"

            def broadcast(chunk_bytes: int) -> dict:
                started = time.perf_counter()
                ours.send(chunk_bytes)
                for chunk in weight_transfer.chunk_layout(dtype_names, shapes, chunk_bytes):
                    weight_transfer.send(group, [weights[metadata[i][0]] for i in chunk])
                assert ours.recv() == "received"
                return measured(time.perf_counter() - started, total_bytes)

            with VLLMServer(model_dir, rl_weight_sync=True, rl_weight_sync_backend="gloo", extra_args=ENGINE_ARGS,
                            env=SERVER_ENV, log_path=Path(tmp) / "serve.log") as server:
                client = KlearVLLMClient(base_url=server.base_url.removesuffix("/v1"), group_port=free_loopback_port(),
                                         connection_timeout=60.0)
                client.init_communicator()
                phases = timed_requests(client)

                def sync() -> dict:
                    phases.clear()
                    started = time.perf_counter()
                    client.update_named_params(metadata, iter(weights.items()))
                    return {**measured(time.perf_counter() - started, total_bytes), **phases}

                variants = {"broadcast": lambda: broadcast(weight_transfer.CHUNK_BYTES), "sync": sync,
                            "chunk-small": lambda: broadcast(args.small_chunk_mib * 2**20)}
                try:
                    comparison = harness.compare(variants, baseline="broadcast", rounds=args.rounds,
                                                 warmup_rounds=args.warmup_rounds, metrics=METRICS)
                finally:
                    client.close_communicator()
        finally:
            ours.send(None)  # a peer stuck in a broadcast (this side failed mid-way) does not read it: killed below
            receiver.join(timeout=30)
            if receiver.is_alive():
                receiver.kill()
                receiver.join()
    print(comparison.table())
    print("sync's requests, median [min-max] seconds over rounds: " + ", ".join(
        f"{endpoint} {s['median']:.3g} [{s['min']:.3g}-{s['max']:.3g}]"
        for endpoint in ("start_weight_update", "update_weights", "finish_weight_update")
        for s in [harness.spread(comparison.values("sync", f"{endpoint}_s"))]))
    print(json.dumps({**comparison.as_dict(), "model": config, "tensors": len(weights), "total_bytes": total_bytes,
                      "small_chunk_mib": args.small_chunk_mib}))


if __name__ == "__main__":
    main()
