"""The policy's weights into vLLM before each generation batch (`use_vllm`), replacing TRL's
`VLLMGeneration.sync_weights` in both modes (installed by the RL trainer, `use_vllm_sync`).

TRL's sync walks `named_parameters` alone, so a persistent buffer (Klear's expert bias, moved by
`expert_bias_update`) never reaches vLLM, and under DeepSpeed AutoEP it would hand vLLM each rank's own experts,
fused and renamed. Both modes here send `policy_weights` instead. Colocated, TRL also hands vLLM one parameter at a
time, which vLLM's CPU build cannot take (`align.serve.vllm_adapter.reload_weights`) and which never notices a
weight it did not send: each engine is reloaded in one pass, every vLLM parameter accounted for. A server checks
the same at the end of each update (`align.serve.vllm_adapter.GlooWeightTransferEngine`). TRL's private parts are
reached through `align.training.compat` (`wake_colocated_engine`, `trl_vllm_named_params`).
"""

from __future__ import annotations

from functools import partial
from itertools import chain

from align.rl.vllm_server import colocate_mode
from align.training import compat
from align.training.autoep import iter_full_weights


def use_vllm_sync(trainer) -> None:
    """Make a GRPO trainer with `use_vllm` sync with `sync_colocated_weights` or a `ServerSync`; colocated, keep
    its policy's forward eager after vLLM decorated Klear's classes for torch.compile."""
    generation = trainer.vllm_generation
    if colocate_mode(trainer.args):
        from align.serve.vllm_adapter import keep_trainer_model_eager  # an engine in this process: vLLM loaded

        generation.sync_weights = partial(sync_colocated_weights, generation)
        keep_trainer_model_eager(trainer.accelerator.unwrap_model(trainer.model))
    else:
        generation.sync_weights = ServerSync(generation)


def sync_colocated_weights(generation) -> None:
    """Colocate mode: the sleep-mode wake-up, `generation_weights` loaded by one in-place reload, the prefix-cache
    reset."""
    from align.serve.vllm_adapter import reload_weights

    compat.wake_colocated_engine(generation)
    reload_weights(generation.llm, generation_weights(generation))
    generation.llm.reset_prefix_cache()


class ServerSync:
    """Server mode, as TRL streams it (the tensors announced once, collected on the first sync: a pass that
    gathers them all; then each sync streamed from the main process while every other rank takes part in the
    gathers), over `policy_weights`; the server's prefix cache reset after."""

    def __init__(self, generation):
        self.generation = generation
        self.metadata: list[tuple[str, str, list[int]]] | None = None

    def __call__(self) -> None:
        generation = self.generation
        if self.metadata is None:
            self.metadata = [(name, str(tensor.dtype).removeprefix("torch."), list(tensor.shape))
                             for name, tensor in generation_weights(generation)]
        if generation.accelerator.is_main_process:
            generation.vllm_client.update_named_params(self.metadata, generation_weights(generation))
            generation.vllm_client.reset_prefix_cache()
        else:
            for _ in generation_weights(generation):  # the gathers are collectives
                pass


def generation_weights(generation):
    """`policy_weights` of the policy TRL's `generation` (a `VLLMGeneration`) generates for."""
    return policy_weights(generation.model, partial(compat.trl_vllm_named_params, generation))


def policy_weights(model, trl_named_params):
    """`(name, tensor)` for vLLM, in Hugging Face names; collective, every rank iterates. `trl_named_params` is
    TRL's walk (`compat.trl_vllm_named_params`: ZeRO-3 gathers one parameter at a time, PEFT merges, vLLM names),
    followed by the persistent buffers it leaves out (ZeRO-3 does not partition buffers). Under DeepSpeed AutoEP
    each rank's `named_parameters` hold only its own experts, fused into AutoEP's `experts.w1/w2/w3`, so every
    rank walks the gather the final save uses instead (`align.training.autoep.iter_full_weights`: each expert
    from its owner rank, under Klear's names)."""
    # decided at each sync, not once at start: DeepSpeed replaces the MoE layers with AutoEP's only when the
    # trainer prepares the engine, after __init__
    if not compat.autoep_layers(model):
        return chain(trl_named_params(), _vllm_named_buffers(model))
    if hasattr(model, "peft_config"):
        raise ValueError("use_vllm with LoRA and DeepSpeed expert parallelism (AutoEP) is not supported: the "
                         "adapters would have to be merged into experts spread over the ranks. Train LoRA without "
                         "expert_parallel in the DeepSpeed config, or generate with transformers (use_vllm: false).")
    return iter_full_weights(model)


def _vllm_named_buffers(model):
    """The model's persistent buffers under the names TRL gives parameters (PEFT's wrapper prefixes removed)."""
    for module_name, module in model.named_modules():
        for name, buffer in compat.persistent_buffers(module):
            full = f"{module_name}.{name}" if module_name else name
            yield full.removeprefix("base_model.model.").replace(".base_layer", ""), buffer
