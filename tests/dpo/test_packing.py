"""Padding-free DPO: packed pairs give the log-probs (and gradients) of the padded computation."""

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM
import align  # noqa: F401
from align.dpo.packing import pack_pairs, packed_pair_forward
from align.training.compat import add_trl_fused_lm_head, trl_preference_collator


def preference_batch(vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def ids(n):
        return torch.randint(3, vocab, (n,), generator=g).tolist()

    examples = [
        {"prompt_ids": ids(9), "chosen_ids": ids(4), "rejected_ids": ids(7)},
        {"prompt_ids": ids(3), "chosen_ids": ids(8), "rejected_ids": ids(2)},
        {"prompt_ids": ids(14), "chosen_ids": ids(1), "rejected_ids": ids(5)},
    ]
    batch = trl_preference_collator(pad_token_id=0)(examples)
    batch["labels"] = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    return batch


@pytest.fixture(scope="module")
def models(tiny_klear_dir):
    padded = AutoModelForCausalLM.from_pretrained(tiny_klear_dir)
    add_trl_fused_lm_head(padded, outputs=("log_probs", "entropy", "mean_logits", "is_top1", "log_sum_sq_probs"))
    return padded, AutoModelForCausalLM.from_pretrained(tiny_klear_dir)


def test_packing_shares_the_prompt_and_drops_padding():
    batch = preference_batch(100)
    shared = pack_pairs(batch["input_ids"], batch["labels"], batch["attention_mask"], share_prompt=True)
    separate = pack_pairs(batch["input_ids"], batch["labels"], batch["attention_mask"], share_prompt=False)
    # real tokens: each prompt once plus both answers, versus both full sequences
    assert int(shared.token_mask.sum()) == (9 + 4 + 7) + (3 + 8 + 2) + (14 + 1 + 5)
    assert int(separate.token_mask.sum()) == int(batch["attention_mask"].sum())
    assert len(shared.target_ids) == int((batch["labels"] != -100).sum())


def test_the_rejected_answer_never_sees_the_chosen_one():
    """Pair 0 (prompt 9, chosen 4, rejected 7 tokens) fills packed row 0 (the two 20-token pairs come first
    in first-fit decreasing, each in its own row): columns 0-8 prompt, 9-12 chosen, 13-19 rejected. The mask
    expected by hand: causal, except that no rejected row attends a chosen column."""
    batch = preference_batch(100)
    shared = pack_pairs(batch["input_ids"], batch["labels"], batch["attention_mask"], share_prompt=True)
    chosen_row, rejected_row = batch["input_ids"][0], batch["input_ids"][3]  # TRL: [chosen_1..3, rejected_1..3]
    assert torch.equal(shared.input_ids[0], torch.cat([chosen_row[:13], rejected_row[9:16]]))
    # the rejected answer takes the chosen answer's positions, after the one prompt
    assert shared.position_ids[0].tolist() == list(range(13)) + list(range(9, 16))
    expected = torch.ones(20, 20, dtype=torch.bool).tril()
    expected[13:, 9:13] = False
    assert torch.equal(shared.attention_mask[0, 0], expected)
    # pair 1 (3 + 8 + 2 = 13 tokens) alone in row 2: the same rule, and the 7 padding columns attend to
    # themselves only and are seen by no real token
    expected = torch.eye(20, dtype=torch.bool)
    expected[:13, :13] = torch.ones(13, 13, dtype=torch.bool).tril()
    expected[11:13, 3:11] = False
    assert torch.equal(shared.attention_mask[2, 0], expected)


@pytest.mark.parametrize("share_prompt", [True, False])
def test_packed_log_probs_equal_the_padded_ones(models, share_prompt):
    padded_model, packed_model = models
    batch = preference_batch(padded_model.config.vocab_size)
    with torch.no_grad():
        expected = padded_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                labels=batch["labels"], fused_lm_head=True, use_cache=False)
        got = packed_pair_forward(packed_model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                  share_prompt=share_prompt)
    mask = batch["labels"][:, 1:] != -100
    torch.testing.assert_close(got.log_probs[mask], expected.log_probs[mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.entropy[mask], expected.entropy[mask], atol=1e-4, rtol=1e-4)
    assert torch.equal(got.is_top1[mask], expected.is_top1[mask].bool())
    assert (got.log_probs[~mask] == 0).all()
    # per sequence, as DPO sums them
    torch.testing.assert_close(got.log_probs.sum(1), expected.log_probs.sum(1), atol=1e-4, rtol=1e-5)


def test_packed_gradients_equal_the_padded_ones(models):
    padded_model, packed_model = models
    padded_model, packed_model = copy.deepcopy(padded_model).train(), copy.deepcopy(packed_model).train()
    batch = preference_batch(padded_model.config.vocab_size, seed=1)
    padded_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                 fused_lm_head=True, use_cache=False).log_probs.sum().backward()
    # chunks of 4 tokens: the chunked, recomputed LM head must give the same gradients
    packed_pair_forward(packed_model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                        lm_head_chunk=4).log_probs.sum().backward()
    for (name, a), (_, b) in zip(padded_model.named_parameters(), packed_model.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)
