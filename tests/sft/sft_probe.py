"""`align.sft`, plus what a test can only see from inside the run, written by rank 0 to `$PROBE_OUT`:
the trained (still sharded) model's logits on a fixed batch, and what each expert-parallel router
was given and chose on that batch. Launched by the tests."""

import os
import sys

import torch

from align.sft.__main__ import main
from align.training.cli import run_stage
from align.training.compat import autoep_routers
from align.sft.config import KlearSFTConfig

if __name__ == "__main__":
    trainer = run_stage("align.sft", main, KlearSFTConfig, sys.argv[1:])
    batch = (torch.arange(2 * 24).reshape(2, 24) * 7 + 3) % trainer.model.config.vocab_size
    routed = []

    def record(module, args, output):  # AutoEP's router returns (weights, experts, counts)
        routed.append({"input": args[0].detach().clone(), "weights": output[0].detach().clone(),
                       "experts": output[1].detach().clone()})

    hooks = [router.register_forward_hook(record) for router, _ in autoep_routers(trainer.model)]
    trainer.model.eval()
    with torch.no_grad():  # every rank takes part: the experts are spread over them
        logits = trainer.model(input_ids=batch, use_cache=False).logits
    for hook in hooks:
        hook.remove()
    if trainer.accelerator.is_main_process:
        torch.save({"input_ids": batch, "logits": logits, "routed": routed}, os.environ["PROBE_OUT"])
