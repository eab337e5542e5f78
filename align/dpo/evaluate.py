"""Held-out check of a DPO run: what did DPO change in the model's own preferences?

    python -m align.dpo.evaluate --policy runs/dpo-tiny --reference runs/sft-tiny --data runs/data/dpo_eval.jsonl

For each held-out pair the chosen and rejected answers are scored by their summed log-probability
given the prompt, once by the model before DPO (the reference, e.g. the SFT model) and once by the
DPO policy. Reported:

- `preference_before` / `preference_after`: share of pairs where that model itself finds the chosen
  answer more likely than the rejected one. This is the plain-terms answer to "what did DPO change";
- `reward_accuracy`: share of pairs where DPO's implicit reward, beta * (log pi - log pi_ref), ranks
  the chosen answer first, i.e. where DPO moved probability toward the chosen answer relative to the
  rejected one (what DPO's loss optimises; it can be high while `preference_after` stays low);
- `mean_logp_margin_before` / `_after`: mean of log p(chosen) - log p(rejected), in nats.
"""

import argparse
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import align  # noqa: F401
from align.data.preference import load_preference_pairs
from align.data.sources import DataError, DataReport, Source, check_local_path


def _answer_spans(tokenizer, pairs: list[dict]) -> list[tuple[list[int], int]]:
    """Per pair and answer (chosen, rejected, chosen, ...): the token ids and where the answer starts."""
    spans = []
    for pair in pairs:
        prompt_ids = tokenizer.apply_chat_template(pair["prompt"], add_generation_prompt=True, tokenize=True,
                                                   return_dict=True)["input_ids"]
        for key in ("chosen", "rejected"):
            full = tokenizer.apply_chat_template(pair["prompt"] + pair[key], tokenize=True,
                                                 return_dict=True)["input_ids"]
            spans.append((list(full), len(prompt_ids)))
    return spans


@torch.no_grad()
def answer_logps(model, tokenizer, pairs: list[dict], batch_size: int = 32) -> torch.Tensor:
    """`[num_pairs, 2]` summed log-probs (float32) of the chosen and rejected answers given their prompt.
    Sequences are batched right-padded: causal attention makes the padding invisible to real tokens."""
    model.eval()
    spans = _answer_spans(tokenizer, pairs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    sums = []
    for start in range(0, len(spans), batch_size):
        chunk = spans[start : start + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        answer = torch.zeros(len(chunk), width - 1, dtype=torch.bool)  # which targets belong to the answer
        for row, (tokens, answer_start) in enumerate(chunk):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            attention[row, : len(tokens)] = 1
            answer[row, answer_start - 1 : len(tokens) - 1] = True
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
        per_token = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
        sums.append((per_token * answer).sum(-1))
    return torch.cat(sums).reshape(len(pairs), 2)


def preference_change(policy, reference, tokenizer, pairs: list[dict], beta: float = 0.1) -> dict:
    before = answer_logps(reference, tokenizer, pairs)
    after = answer_logps(policy, tokenizer, pairs)
    margin_before, margin_after = before[:, 0] - before[:, 1], after[:, 0] - after[:, 1]
    rewards = beta * (after - before)
    return {
        "pairs": len(pairs),
        "preference_before": (margin_before > 0).float().mean().item(),
        "preference_after": (margin_after > 0).float().mean().item(),
        "mean_logp_margin_before": margin_before.mean().item(),
        "mean_logp_margin_after": margin_after.mean().item(),
        "reward_accuracy": (rewards[:, 0] > rewards[:, 1]).float().mean().item(),
    }


def describe(result: dict, chosen: str = "the chosen answer", rejected: str = "the rejected one") -> str:
    """The result in plain words, for people reading a demo or a run log."""
    return (
        f"On {result['pairs']} held-out pairs, the model itself prefers {chosen} (finds it more likely than "
        f"{rejected}) in {result['preference_before']:.0%} of pairs before DPO and "
        f"{result['preference_after']:.0%} after (mean log-prob margin {result['mean_logp_margin_before']:+.2f} -> "
        f"{result['mean_logp_margin_after']:+.2f} nats). DPO moved probability toward {chosen} in "
        f"{result['reward_accuracy']:.0%} of pairs (its implicit reward's accuracy)."
    )


def load_pairs(path: str, report: DataReport | None = None) -> list[dict]:
    """The pairs of `path` as `align.dpo` reads them (an HH file is recognised as a whole, its rows without
    turn markers dropped); what was dropped or decided is counted in `report`. `DataError` on a bad row."""
    report = report if report is not None else DataReport()
    pairs = [pair for _, _, pair in load_preference_pairs([Source(path)], report)]
    report.kept = len(pairs)
    return pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", required=True, help="the model after DPO")
    parser.add_argument("--reference", required=True, help="the model before DPO (DPO's reference)")
    parser.add_argument("--data", required=True, help="held-out preference pairs (any format align.dpo reads)")
    parser.add_argument("--beta", type=float, default=0.1)
    args = parser.parse_args(argv)
    report = DataReport()
    try:  # before any model is loaded: a bad file or a missing model stops in one line, at once
        for flag, name in (("--policy", args.policy), ("--reference", args.reference)):
            check_local_path(name, flag)
        pairs = load_pairs(args.data, report)
    except (DataError, FileNotFoundError) as error:
        sys.exit(f"align.dpo.evaluate: {error}")
    if report.dropped or report.notes:
        print(f"held-out pairs read from {args.data}:\n{report.summary()}")
    tokenizer = AutoTokenizer.from_pretrained(args.policy)
    result = preference_change(
        AutoModelForCausalLM.from_pretrained(args.policy), AutoModelForCausalLM.from_pretrained(args.reference),
        tokenizer, pairs, args.beta,
    )
    print(describe(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
