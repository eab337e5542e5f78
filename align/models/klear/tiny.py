"""A seeded, random, tiny Klear checkpoint with a small ChatML tokenizer, for tests and the demo.

    python -m align.models.klear.tiny --out DIR [--seed 0]

writes `DIR/config.json`, `DIR/model.safetensors` in the official Klear layout (per-expert keys)
and a byte-level BPE tokenizer trained on a few paragraphs embedded below, with Qwen's special
tokens and a ChatML chat template. Nothing is downloaded. The model is random: whatever it
generates means nothing.
"""

import argparse
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from .configuration_klear import KlearConfig
from .modeling_klear import KlearMoeForCausalLM

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen's ChatML layout. `{% generation %}` marks the assistant tokens so that trainers can put the
# loss on them only (TRL's `assistant_only_loss`).
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_CORPUS = """\
The quick brown fox jumps over the lazy dog. A preference dataset pairs a prompt with a chosen
and a rejected answer. Annotators compare two answers and pick the better one, or call it a tie.
Mixture-of-experts models route every token to a few experts out of many; a shared expert sees
every token. Supervised fine-tuning teaches the model to follow instructions; direct preference
optimization then moves it toward the answers people prefer. What is the capital of France?
Paris is the capital of France. Write a short poem about the sea. Explain why the sky is blue.
Count from one to ten: one two three four five six seven eight nine ten. 0 1 2 3 4 5 6 7 8 9.
Please answer the question, be helpful, honest and harmless. Thank you! Yes, no, maybe.
def add(a, b): return a + b  # code, math: 3 + 4 = 7, 12 * 12 = 144, x^2 - 1 = (x - 1)(x + 1).
"""


def build_tiny_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE (any text encodes, nothing is unknown) with Qwen's special tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHATML_TEMPLATE,
        model_max_length=4096,
        padding_side="right",
    )


def tiny_config(tokenizer: PreTrainedTokenizerFast, **overrides) -> KlearConfig:
    """Klear's architecture at toy sizes: 2 sparse layers of 8 experts, 2 chosen, 1 shared."""
    values = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        moe_intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_experts=8,
        num_experts_per_tok=2,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")],
    )
    values.update(overrides)
    return KlearConfig(**values)


def build_tiny_klear(out_dir: str | Path, seed: int = 0, tokenizer=None, **config_overrides) -> Path:
    """Write a random tiny Klear checkpoint and its tokenizer to `out_dir`; returns the path.
    `tokenizer`: a real one (e.g. Qwen's, with `vocab_size=151936` as Klear has) instead of the toy one."""
    out_dir = Path(out_dir)
    tokenizer = tokenizer if tokenizer is not None else build_tiny_tokenizer()
    torch.manual_seed(seed)
    model = KlearMoeForCausalLM(tiny_config(tokenizer, **config_overrides))
    # Random routers pick experts almost uniformly; a non-zero bias and blend exercise the paths
    # that a freshly initialised (all-zero) bias and coefficient would hide.
    with torch.no_grad():
        for router in model.routers():
            router.e_score_correction_bias.normal_(0.0, 0.05)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory to write the checkpoint into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = build_tiny_klear(args.out, seed=args.seed)
    print(f"wrote a random tiny Klear checkpoint and tokenizer to {path}")


if __name__ == "__main__":
    main()
