"""Held-out check of a DPO run: does the implicit reward rank the chosen answer above the rejected one?

    python -m align.dpo.evaluate --policy runs/dpo-tiny --reference runs/sft-tiny --data runs/data/dpo_eval.jsonl

The implicit reward of an answer y is beta * (log pi(y|x) - log pi_ref(y|x)); a pair counts as
ranked right when the chosen answer's reward is higher. The reference model's own preference
(log pi_ref(chosen) > log pi_ref(rejected)) is reported next to it as the before-training baseline.
"""

import argparse
import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import align  # noqa: F401
from align.data.preference import validate_preference_row
from align.data.sources import Source, read_rows


@torch.no_grad()
def answer_logps(model, tokenizer, pairs: list[dict]) -> torch.Tensor:
    """`[num_pairs, 2]` summed log-probs of the chosen and rejected answers given their prompt."""
    model.eval()
    result = torch.zeros(len(pairs), 2)
    for i, pair in enumerate(pairs):
        prompt_ids = tokenizer.apply_chat_template(pair["prompt"], add_generation_prompt=True, tokenize=True,
                                                   return_dict=True)["input_ids"]
        for j, key in enumerate(("chosen", "rejected")):
            full = tokenizer.apply_chat_template(pair["prompt"] + pair[key], tokenize=True,
                                                 return_dict=True)["input_ids"]
            ids = torch.tensor([full])
            log_probs = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
            targets = ids[0, 1:]
            per_token = log_probs.gather(-1, targets[:, None])[:, 0]
            result[i, j] = per_token[len(prompt_ids) - 1 :].sum()
    return result


def implicit_reward_accuracy(policy, reference, tokenizer, pairs: list[dict], beta: float = 0.1) -> dict:
    policy_logps = answer_logps(policy, tokenizer, pairs)
    reference_logps = answer_logps(reference, tokenizer, pairs)
    rewards = beta * (policy_logps - reference_logps)
    margins = rewards[:, 0] - rewards[:, 1]
    return {
        "pairs": len(pairs),
        "reward_accuracy": (margins > 0).float().mean().item(),
        "mean_margin": margins.mean().item(),
        "reference_preference_accuracy": (reference_logps[:, 0] > reference_logps[:, 1]).float().mean().item(),
    }


def load_pairs(path: str) -> list[dict]:
    return [validate_preference_row(row, where) for where, row in read_rows(Source(path))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--data", required=True, help="held-out preference pairs (any format align.dpo reads)")
    parser.add_argument("--beta", type=float, default=0.1)
    args = parser.parse_args(argv)
    tokenizer = AutoTokenizer.from_pretrained(args.policy)
    result = implicit_reward_accuracy(
        AutoModelForCausalLM.from_pretrained(args.policy), AutoModelForCausalLM.from_pretrained(args.reference),
        tokenizer, load_pairs(args.data), args.beta,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
