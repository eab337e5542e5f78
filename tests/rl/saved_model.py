"""What the RL launch tests check of a run's output folder and log: the saved policy loads with plain transformers
(after `import align`) and answers a chat prompt greedily with finite logits; the sampler-trainer log-probability
gaps TRL logged."""

import re
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import align  # noqa: F401


def assert_loads_and_answers(folder: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of Peru?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    out = model.generate(ids, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > ids.shape[1] and torch.isfinite(model(ids).logits).all()


def logp_gaps(log: str) -> list[float]:
    """TRL's `sampling/sampling_logp_difference/max` of each generation batch (logged only for vLLM rollouts): after
    an optimiser step the sampler agrees with the trainer only if the engine got the new weights."""
    return [float(g) for g in re.findall(r"'sampling/sampling_logp_difference/max': '([0-9.e-]+)'", log)]
