"""Checkpoint directories with the files a real run writes (the layout `align.training.checkpoints` checks),
made of small real torch and safetensors files."""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file


def write_checkpoint(output_dir: Path, step: int, ranks: int = 2, deepspeed: bool = True) -> Path:
    """`output_dir/checkpoint-{step}` as a ZeRO-3 run of `ranks` processes (or a plain one-process run) saves it."""
    path = output_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    if ranks == 1:
        torch.save({"cpu": torch.random.get_rng_state()}, path / "rng_state.pth")
    for rank in range(ranks if ranks > 1 else 0):
        torch.save({"cpu": torch.random.get_rng_state()}, path / f"rng_state_{rank}.pth")
    if deepspeed:
        (path / "latest").write_text(f"global_step{step}")
        states = path / f"global_step{step}"
        states.mkdir()
        for rank in range(ranks):
            torch.save({"module": {}}, states / f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt")
            torch.save({"optimizer_state_dict": {}}, states / f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt")
    else:
        save_file({"lm_head.weight": torch.zeros(2, 2)}, str(path / "model.safetensors"))
        torch.save({"state": {}}, path / "optimizer.pt")
    torch.save({}, path / "scheduler.pt")
    return path
