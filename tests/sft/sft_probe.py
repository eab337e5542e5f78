"""`align.sft`, plus what a test can only see from inside the run: the trained (still sharded)
model's logits on a fixed batch, written by rank 0 to `$PROBE_OUT`. Launched by the tests."""

import os

import torch
from trl import ModelConfig, ScriptArguments, TrlParser

from align.sft.__main__ import main
from align.training.config import KlearSFTConfig

if __name__ == "__main__":
    trainer = main(*TrlParser((ScriptArguments, KlearSFTConfig, ModelConfig)).parse_args_and_config())
    batch = (torch.arange(2 * 24).reshape(2, 24) * 7 + 3) % trainer.model.config.vocab_size
    trainer.model.eval()
    with torch.no_grad():  # every rank takes part: the experts are spread over them
        logits = trainer.model(input_ids=batch, use_cache=False).logits
    if trainer.accelerator.is_main_process:
        torch.save({"input_ids": batch, "logits": logits}, os.environ["PROBE_OUT"])
