"""Expert parallelism on GPUs, proven on CPU where it can be: the global-to-local expert map vLLM's
fused-MoE layer uses, and the expert ids and weights Klear's external routing hands it.

vLLM's CPU build cannot run expert parallelism (its experts take no expert map), so the first GPU
run would be the first to combine the two. Here Klear's real routed block runs on real tokens with
its experts swapped for a recorder: what it hands the experts is exactly what vLLM's
`TransformersMoERunner.forward(hidden_states, topk_ids, topk_weights)` receives in their place.
A hand-written expert-parallel MoE (each rank holds the experts its map gives it and computes only
the (token, slot) pairs routed to them; the ranks' outputs are summed, as the all-reduce does) must
then equal Klear's own single-device experts.
"""

import pytest
import torch
import torch.nn.functional as F

from tests.markers import needs_vllm

pytestmark = needs_vllm


def test_klear_46b_expert_map_gives_each_of_8_ranks_32_contiguous_experts():
    from align.serve.vllm_adapter import expert_map

    for rank in range(8):
        mapping = expert_map(8, rank, 256)
        expected = torch.full((256,), -1, dtype=torch.int32)
        expected[32 * rank: 32 * (rank + 1)] = torch.arange(32, dtype=torch.int32)
        assert torch.equal(mapping, expected), rank


class RecordingExperts(torch.nn.Module):
    """Stands where vLLM's fused-MoE runner stands: records its inputs, answers with Klear's experts."""

    def __init__(self, experts):
        super().__init__()
        self.inner = experts
        self.calls = []

    def forward(self, hidden_states, top_k_index, top_k_weights):
        self.calls.append((hidden_states, top_k_index, top_k_weights))
        return self.inner(hidden_states, top_k_index, top_k_weights)


def expert_parallel_moe(hidden, ids, weights, gate_up_proj, down_proj, ep_size, maps):
    """Plain PyTorch expert-parallel MoE: rank r holds gate_up_proj/down_proj rows where maps[r] >= 0, in
    local-slot order, and adds weight * SwiGLU-expert(x) for each (token, slot) routed to a local expert."""
    total = torch.zeros_like(hidden)
    for rank in range(ep_size):
        local = maps[rank]
        held = (local >= 0).nonzero()[:, 0]
        local_gate_up = torch.empty(len(held), *gate_up_proj.shape[1:])
        local_down = torch.empty(len(held), *down_proj.shape[1:])
        local_gate_up[local[held].long()] = gate_up_proj[held]
        local_down[local[held].long()] = down_proj[held]
        for token in range(hidden.shape[0]):
            for slot in range(ids.shape[1]):
                slot_on_rank = local[ids[token, slot]].item()
                if slot_on_rank < 0:
                    continue
                gate, up = (local_gate_up[slot_on_rank] @ hidden[token]).chunk(2)
                total[token] += weights[token, slot] * (local_down[slot_on_rank] @ (F.silu(gate) * up))
    return total


def test_external_routing_hands_global_expert_ids_that_the_expert_map_splits_exactly(tiny_klear_dir):
    from transformers import AutoModelForCausalLM

    from align.serve.vllm_adapter import expert_map

    model = AutoModelForCausalLM.from_pretrained(tiny_klear_dir, dtype=torch.float32).eval()
    routed = next(m for m in model.modules() if type(m).__name__ == "KlearRoutedExperts")
    recorder = RecordingExperts(routed.experts)
    routed.experts = recorder
    with torch.no_grad():
        model(torch.arange(3, 40)[None])
    hidden, ids, weights = recorder.calls[0]
    num_experts, top_k = model.config.num_experts, model.config.num_experts_per_tok
    # What the runner casts and hands the kernels: global ids (every expert in range, none masked), and
    # the router's own weights (from the unbiased sigmoid scores, renormalised), one row per token.
    assert ids.shape == weights.shape == (hidden.shape[0], top_k)
    assert 0 <= ids.min() and ids.max() < num_experts
    assert all(len(set(row)) == top_k for row in ids.tolist())
    scores = F.linear(hidden, routed.gate.weight).sigmoid().gather(-1, ids)
    torch.testing.assert_close(weights, scores / scores.sum(-1, keepdim=True), rtol=0, atol=1e-6)

    with torch.no_grad():
        single_device = recorder.inner(hidden, ids, weights)
        for ep_size in (2, 4):
            maps = [expert_map(ep_size, rank, num_experts) for rank in range(ep_size)]
            held = torch.stack([m >= 0 for m in maps])
            assert torch.equal(held.sum(0), torch.ones(num_experts, dtype=torch.long))  # each expert on one rank
            ids32, weights32 = ids.to(torch.int32), weights.to(torch.float32)  # TransformersMoERunner's casts
            reference = expert_parallel_moe(hidden, ids32, weights32, recorder.inner.gate_up_proj,
                                            recorder.inner.down_proj, ep_size, maps)
            torch.testing.assert_close(reference, single_device, rtol=1e-5, atol=1e-6)
