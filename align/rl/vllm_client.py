"""TRL's `VLLMClient` for a server-mode generator (`align.rl.vllm_server`), speaking the server's `gloo`
weight-transfer backend (`align.serve.weight_transfer`) too. Imports vLLM (through TRL's client): only for
`vllm_mode: server`."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import requests
from trl.generation.vllm_client import VLLMClient

from align.serve import weight_transfer


class KlearVLLMClient(VLLMClient):
    """TRL's client for a server-mode generator; its weight sync also speaks the server's `gloo` backend
    (`align.serve.weight_transfer`). With `nccl` it is TRL's own. TRL builds it (`compat.trl_vllm_generation`)."""

    gloo_group = None

    def init_communicator(self, device=0):
        info = self.get_server_info().get("weight_transfer_config") or {}
        if info.get("backend") != weight_transfer.BACKEND:
            return super().init_communicator(device)
        world_size = self.get_world_size() + 1  # the trainer is rank 0, the server's workers follow
        address = _address_towards(self.host)
        init_info = {"master_address": address, "master_port": self.group_port, "rank_offset": 1,
                     "world_size": world_size}
        # the server's workers block in the group's rendezvous while handling the request, as the trainer does here
        with ThreadPoolExecutor(max_workers=1) as executor:
            joined = executor.submit(self._sync_call, "init_weight_transfer_engine", {"init_info": init_info})
            self.gloo_group = weight_transfer.open_group(address, self.group_port, 0, world_size)
            joined.result()

    def update_named_params(self, metadata, named_params):
        """As TRL's: announce the tensors, then stream them (collected per chunk as host copies: a ZeRO-3 walk
        frees each gathered parameter at the next step), inside one start/finish of the server's update."""
        if self.gloo_group is None:
            return super().update_named_params(metadata, named_params)
        names, dtype_names, shapes = (list(field) for field in zip(*metadata, strict=True))
        stream = iter(named_params)
        self._sync_call("start_weight_update", {})
        with ThreadPoolExecutor(max_workers=1) as executor:
            received = executor.submit(self._sync_call, "update_weights",
                                       {"update_info": {"names": names, "dtype_names": dtype_names, "shapes": shapes}})
            for chunk in weight_transfer.chunk_layout(dtype_names, shapes):
                if received.done():  # the server stopped receiving (it failed): its error, not a stuck broadcast
                    received.result()
                    raise RuntimeError("vLLM server: /update_weights returned before every weight was sent")
                tensors = []
                for index in chunk:
                    name, tensor = next(stream)
                    if name != names[index]:
                        raise RuntimeError(f"weight sync: the walk yielded {name!r} where {names[index]!r} was "
                                           "announced")
                    tensors.append(tensor.detach().to("cpu", copy=True))
                weight_transfer.send(self.gloo_group, tensors)
            received.result()
        self._sync_call("finish_weight_update", {})

    def close_communicator(self):
        if self.gloo_group is None:
            return super().close_communicator()
        self.gloo_group = None

    def _sync_call(self, endpoint: str, payload: dict) -> None:
        """One weight-sync request, never retried (TRL's session retries a 500 on POST: a retried
        `/update_weights` would wait for a broadcast the trainer never repeats)."""
        response = requests.post(f"{self.base_url}/{endpoint}", json=payload, timeout=None)
        if response.status_code != 200:
            raise RuntimeError(f"vLLM server {self.base_url}/{endpoint}: HTTP {response.status_code}: "
                               f"{response.text[-2000:]}")


def _address_towards(host: str) -> str:
    """This machine's address on the route to `host` (the server's workers connect to the trainer's group there);
    a UDP socket's connect sends nothing."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((socket.gethostbyname(host), 9))
        return probe.getsockname()[0]
