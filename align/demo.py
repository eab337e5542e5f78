"""`make demo`: the klear-align loop on a tiny random Klear model, on this CPU.

    python -m align.demo [--out demo-output]

Every step prints what it did and where its output is. The model is random and tiny: it shows
that the machinery works end to end, and nothing it generates or scores means anything.
"""

import argparse
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import align  # noqa: F401  (registers Klear)
from align.models.klear.tiny import build_tiny_klear


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def build_and_generate(out: Path) -> Path:
    step("1. Build a tiny random Klear checkpoint (official layout) and generate from it")
    started = time.perf_counter()
    model_dir = build_tiny_klear(out / "tiny-klear", seed=0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"wrote {model_dir} ({type(model).__name__}, {n_params:,} parameters, "
          f"{model.config.num_experts} experts, {model.config.num_experts_per_tok} per token)")
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(generated[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    print(f"prompt: {messages[0]['content']!r}\nrandom model's greedy answer (meaningless): {answer!r}")
    print(f"done in {time.perf_counter() - started:.1f}s")
    return model_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    build_and_generate(args.out)
    print(f"\nAll demo outputs are under {args.out.resolve()}")


if __name__ == "__main__":
    main()
