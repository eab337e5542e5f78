"""Packed pairs for DPO: each pair's prompt, chosen and rejected answers packed into one sequence.

TRL's DPOTrainer hands the model a padded batch, `[chosen_1..B, rejected_1..B]` x `max_len`, and
scores every position (on CPU its fused LM head projects all of them to the vocabulary). Here:

- padding is dropped: pairs are packed into rows by first-fit decreasing, rows no longer than
  the longest pair, so almost no token is padding;
- with `share_prompt`, a pair is `[prompt, chosen, rejected]`: the prompt is computed once. The
  rejected tokens take positions `P..` like the chosen ones and attend to the prompt and to
  themselves, never to the chosen answer (a per-row 4D attention mask);
- only completion tokens reach the LM head, predicted from the hidden state before them (the
  last prompt token predicts the first token of both answers), in chunks whose logits are
  recomputed in the backward pass rather than stored.

The result is scattered back into the padded layout TRL expects, so its losses and metrics run
unchanged. `tests/dpo/test_packing.py` checks the log-probs against the padded computation.
"""

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from align.training.compat import fused_lm_head_output, route_fused_lm_head

PROMPT, CHOSEN, REJECTED = 0, 1, 2


@dataclass
class PackedPairs:
    input_ids: torch.Tensor  # [rows, T]
    position_ids: torch.Tensor  # [rows, T]
    attention_mask: torch.Tensor  # [rows, 1, T, T] bool, True = may attend
    token_mask: torch.Tensor  # [rows, T] 1 for real tokens, 0 for the row padding
    predictor: torch.Tensor  # [N] flat index (row * T + col) of the hidden state that predicts each target
    target_ids: torch.Tensor  # [N]
    padded_index: tuple[torch.Tensor, torch.Tensor]  # where each target's log-prob goes in TRL's [2B, L-1] layout


def _attention_groups(input_ids, labels, attention_mask, share_prompt: bool) -> list[list[tuple]]:
    """The batch as groups of segments `(branch, padded row, start, end)`; tokens attend only within
    their group. A shared-prompt pair is one group [prompt, chosen, rejected]; otherwise each of its
    two sequences is a group [prompt, answer]."""
    num_pairs = input_ids.shape[0] // 2
    pairs = []
    for i in range(num_pairs):
        rows = (i, num_pairs + i)
        lengths = [int(attention_mask[r].sum()) for r in rows]
        starts = [int((labels[r] != -100).nonzero()[0]) if (labels[r] != -100).any() else lengths[k]
                  for k, r in enumerate(rows)]
        same_prompt = starts[0] == starts[1] and torch.equal(input_ids[rows[0], : starts[0]], input_ids[rows[1], : starts[1]])
        if share_prompt and same_prompt:
            groups = [[(PROMPT, rows[0], 0, starts[0]), (CHOSEN, rows[0], starts[0], lengths[0]),
                       (REJECTED, rows[1], starts[1], lengths[1])]]
        else:  # two ordinary causal sequences
            groups = [[(PROMPT, r, 0, starts[k]), (CHOSEN, r, starts[k], lengths[k])] for k, r in enumerate(rows)]
        pairs.extend(groups)
    return pairs


def pack_pairs(input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor,
               share_prompt: bool = True) -> PackedPairs:
    """Pack TRL's padded preference batch (`labels` = -100 outside the completions) without padding."""
    groups = _attention_groups(input_ids, labels, attention_mask, share_prompt)
    sizes = [sum(end - start for _, _, start, end in g) for g in groups]
    capacity = max(sizes)
    bins: list[list[int]] = []  # first-fit decreasing
    room: list[int] = []
    for g in sorted(range(len(groups)), key=lambda g: -sizes[g]):
        slot = next((b for b, free in enumerate(room) if free >= sizes[g]), None)
        if slot is None:
            bins.append([])
            room.append(capacity)
            slot = len(bins) - 1
        bins[slot].append(g)
        room[slot] -= sizes[g]

    rows, width = len(bins), capacity
    ids = torch.zeros(rows, width, dtype=input_ids.dtype)
    positions = torch.zeros(rows, width, dtype=torch.long)
    group_id = torch.full((rows, width), -1, dtype=torch.long)
    branch = torch.zeros(rows, width, dtype=torch.long)
    predictors, targets, out_rows, out_cols = [], [], [], []
    for r, members in enumerate(bins):
        cursor = 0
        for g in members:
            prompt_end_col = None
            for kind, src_row, start, end in groups[g]:
                n = end - start
                cols = slice(cursor, cursor + n)
                ids[r, cols] = input_ids[src_row, start:end]
                positions[r, cols] = torch.arange(start, end)
                group_id[r, cols], branch[r, cols] = g, kind
                if kind == PROMPT:
                    prompt_end_col = cursor + n - 1
                else:  # completion tokens: predicted by the previous token of their own branch
                    for k in range(n):
                        pred_col = (cursor + k - 1) if k > 0 else prompt_end_col
                        if pred_col is None or start + k == 0:
                            continue  # a completion at position 0 has no predictor (TRL scores it neither)
                        predictors.append(r * width + pred_col)
                        targets.append(int(input_ids[src_row, start + k]))
                        out_rows.append(src_row)
                        out_cols.append(start + k - 1)
                cursor += n

    real = group_id >= 0
    order = torch.arange(width)
    same_group = group_id[:, :, None] == group_id[:, None, :]
    causal = order[None, None, :] <= order[None, :, None]
    visible_branch = (branch[:, None, :] == PROMPT) | (branch[:, None, :] == branch[:, :, None])
    mask = same_group & causal & visible_branch & real[:, None, :] & real[:, :, None]
    mask |= torch.eye(width, dtype=torch.bool)[None]  # padding attends to itself only (no empty softmax row)
    return PackedPairs(
        input_ids=ids,
        position_ids=positions,
        attention_mask=mask[:, None],
        token_mask=real.long(),
        predictor=torch.tensor(predictors, dtype=torch.long),
        target_ids=torch.tensor(targets, dtype=torch.long),
        padded_index=(torch.tensor(out_rows, dtype=torch.long), torch.tensor(out_cols, dtype=torch.long)),
    )


def completion_statistics(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per target token: log-prob, entropy, mean logit, log sum of squared probs, top-1 hit (float32)."""
    logits = logits.float()
    log_probs_all = F.log_softmax(logits, dim=-1)
    return {
        "log_probs": log_probs_all.gather(-1, targets[:, None])[:, 0],
        "entropy": -(log_probs_all.exp() * log_probs_all).sum(-1),
        "mean_logits": logits.mean(-1),
        "log_sum_sq_probs": torch.logsumexp(2 * log_probs_all, dim=-1),
        "is_top1": (logits.argmax(-1) == targets),
    }


def _head_statistics(lm_head, hidden: torch.Tensor, targets: torch.Tensor, chunk: int) -> dict[str, torch.Tensor]:
    """`completion_statistics` over chunks of tokens. Each chunk's logits (chunk x vocabulary) are
    recomputed in the backward pass instead of kept, so memory stays bounded for a 152k vocabulary."""
    def stats_of(h, t):
        return completion_statistics(lm_head(h), t)

    if len(targets) <= chunk:  # one chunk: nothing to save by recomputing
        return stats_of(hidden, targets)
    parts = [
        checkpoint(stats_of, hidden[i : i + chunk], targets[i : i + chunk], use_reentrant=False)
        if torch.is_grad_enabled() else stats_of(hidden[i : i + chunk], targets[i : i + chunk])
        for i in range(0, len(targets), chunk)
    ]
    return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}


def packed_pair_forward(model, input_ids, attention_mask, labels, share_prompt: bool = True,
                        output_router_logits: bool = False, lm_head_chunk: int = 1024, **_ignored):
    """What TRL's fused LM head returns for a padded pair batch, computed on packed pairs."""
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    device = input_ids.device
    packed = pack_pairs(input_ids.cpu(), labels.cpu(), attention_mask.cpu(), share_prompt)
    backbone = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    outputs = backbone(
        input_ids=packed.input_ids.to(device),
        position_ids=packed.position_ids.to(device),
        attention_mask=packed.attention_mask.to(device),
        use_cache=False,
        output_router_logits=output_router_logits,
    )
    hidden = outputs.last_hidden_state.reshape(-1, outputs.last_hidden_state.shape[-1])
    stats = _head_statistics(model.get_output_embeddings(), hidden[packed.predictor.to(device)],
                             packed.target_ids.to(device), lm_head_chunk)

    shape = (input_ids.shape[0], input_ids.shape[1] - 1)
    rows, cols = (i.to(device) for i in packed.padded_index)
    padded = {}
    for name, values in stats.items():
        out = torch.zeros(shape, dtype=values.dtype if name != "is_top1" else torch.bool, device=device)
        padded[name] = out.index_put((rows, cols), values)
    label_mask = labels[:, 1:] != -100
    aux_loss = None
    if output_router_logits:
        config = model.config
        aux_loss = load_balancing_loss_func(
            outputs.router_logits, config.num_experts, config.num_experts_per_tok, packed.token_mask.to(device)
        )
    loss = -padded["log_probs"].sum() / label_mask.sum().clamp(min=1)
    return fused_lm_head_output(loss=loss, label_mask=label_mask, aux_loss=aux_loss, **padded)


def use_packed_pairs(model, share_prompt: bool = True) -> None:
    """Answer TRL's DPOTrainer's fused-LM-head calls with `packed_pair_forward`.

    Apply after TRL has patched the model; every other call (generation, plain forward) is unchanged.
    """
    route_fused_lm_head(model, partial(packed_pair_forward, share_prompt=share_prompt))
