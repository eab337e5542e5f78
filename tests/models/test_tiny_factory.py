"""The tiny factory's command writes a checkpoint that plain transformers loads and generates from."""

import subprocess
import sys

from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

import align  # noqa: F401


def test_tiny_command_writes_a_loadable_chatml_checkpoint_in_the_official_layout(tmp_path):
    out = tmp_path / "tiny"
    done = subprocess.run(
        [sys.executable, "-m", "align.models.klear.tiny", "--out", str(out), "--seed", "3"],
        capture_output=True, text=True, check=True,
    )
    assert str(out) in done.stdout
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "model.layers.0.mlp.experts.7.down_proj.weight" in keys and "model.layers.0.mlp.expert_bias" in keys
    assert not any(".routed." in k for k in keys)

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    inputs = tokenizer(text, return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > inputs["input_ids"].shape[1]
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in model.config.eos_token_id


def test_same_seed_same_weights(tmp_path):
    from align.models.klear.tiny import build_tiny_klear

    a, b = build_tiny_klear(tmp_path / "a", seed=1), build_tiny_klear(tmp_path / "b", seed=1)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
