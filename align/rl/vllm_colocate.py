"""Weight sync to colocated vLLM engines (`use_vllm`, `vllm_mode: colocate`).

TRL's colocated sync hands vLLM one parameter at a time (`VLLMGeneration.sync_weights`), which vLLM's CPU build
cannot take (see `align.serve.vllm_adapter.reload_weights`) and which never notices a weight it did not send: here
the whole model is reloaded in one pass instead, every vLLM parameter accounted for. TRL's private parts are reached
through `align.training.compat` (`wake_colocated_engine`, `trl_vllm_named_params`).
"""

from __future__ import annotations

from functools import partial
from itertools import chain

from align.serve.vllm_adapter import keep_trainer_model_eager, reload_weights
from align.training import compat
from align.training.autoep import iter_full_weights


def use_whole_model_sync(trainer) -> None:
    """Make a colocated GRPO trainer sync its engines with `sync_colocated_weights`, and keep its policy's forward
    eager after vLLM decorated Klear's classes for torch.compile."""
    trainer.vllm_generation.sync_weights = partial(sync_colocated_weights, trainer.vllm_generation)
    keep_trainer_model_eager(trainer.accelerator.unwrap_model(trainer.model))


def sync_colocated_weights(generation) -> None:
    """`VLLMGeneration.sync_weights` for colocate mode: the sleep-mode wake-up, the weights (`colocated_weights`)
    loaded by one in-place reload, and the prefix-cache reset."""
    compat.wake_colocated_engine(generation)
    reload_weights(generation.llm, colocated_weights(generation.model, partial(compat.trl_vllm_named_params,
                                                                                generation)))
    generation.llm.reset_prefix_cache()


def colocated_weights(model, trl_named_params):
    """`(name, tensor)` for a colocated engine; collective, every rank iterates. `trl_named_params` is TRL's walk
    (`compat.trl_vllm_named_params`: ZeRO-3 gathers one parameter at a time, PEFT merges, vLLM names), followed by
    the persistent buffers it leaves out (Klear's expert bias: without it an engine keeps routing with the bias it
    loaded; ZeRO-3 does not partition buffers). Under DeepSpeed AutoEP each rank's `named_parameters` hold only its
    own experts, fused into AutoEP's `experts.w1/w2/w3`, so every rank walks the gather the final save uses instead
    (`align.training.autoep.iter_full_weights`: each expert from its owner rank, under Klear's names)."""
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
