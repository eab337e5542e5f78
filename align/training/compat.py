"""The one place that touches private or undocumented APIs of transformers, TRL, DeepSpeed and torch
(datasets has its own: align.data.datasets_compat).

Written for (and tested with) the versions in `WRITTEN_FOR`; `check_versions()` runs on import and
warns once, naming each difference, when the installed versions are others. What is used, and why:

- TRL: DPOTrainer calls the model as `model(..., fused_lm_head=True)` after `add_fused_lm_head`
  patched it (trl/trainer/utils.py), and expects a `FusedCausalLMOutput`. Packed pairs answer that
  call (`route_fused_lm_head`); tests build stock TRL's padded reference from `add_trl_fused_lm_head` and
  `trl_preference_collator` (`DataCollatorForPreference`, not exported by `trl`).
  `DPOTrainer._precompute_ref_logps` is overridden (`PrecomputeReferenceWithCopy`) because under AutoEP it
  would wrap the policy itself in a second DeepSpeed engine. `trl.models.utils.prepare_deepspeed` wraps that reference copy.
- TRL's GRPOTrainer (`GRPOHooks`): `_compute_loss` is answered for `loss_type: gppo` (TRL's own losses go to
  TRL), from TRL's `_get_per_token_logps_and_entropies`; `_generate_and_score_completions` is wrapped so
  the RL trainer sees each scored batch (zero-variance groups, correct rollouts, rollout records) and
  `_generate_single_turn` so generation runs with the router logits off and the model in eval mode (Klear's aux
  loss over a KV-cached step crashes; expert loads count training forwards only) while TRL's `_generate` still
  books the rollouts as training ones. `state.num_input_tokens_seen` counts the tokens trained on (the RL
  trainer's count, not TRL's every-rollout one). Metrics go into TRL's
  `_metrics`, rollouts are read back from its `_logs` (the last generation batch, gathered over ranks).
  With `use_vllm` the RL trainer replaces the instance's `vllm_generation.sync_weights` (`align.rl.vllm_sync`),
  reaching TRL's `VLLMGeneration` privates through `wake_colocated_engine` (`enable_sleep_mode`,
  `_llm_weights_sleeping`, `trl.generation.vllm_generation.empty_cache`) and `trl_vllm_named_params`
  (`_iter_named_params`); `trl_vllm_generation` adds `vllm.LLM` options (`enforce_eager`) and substitutes the
  server's client class by wrapping the module's `LLM` and `VLLMClient` that `VLLMGeneration._init_vllm` calls,
  while `GRPOTrainer.__init__` builds them.
- transformers: `transformers_zero3_off` clears and restores the private `_hf_deepspeed_config_weak_ref` (the
  registered `HfDeepSpeedConfig`) around a colocated vLLM engine's model build.
- DeepSpeed AutoEP: presets are registered in `auto_ep_presets.registry` (`PRESET_MODELS` and the
  private `_PRESET_ADAPTERS`); `AutoEPMoELayer`, its router (`TokenChoiceTopKRouter`) and
  `autoep_experts_for_rank` are internal modules. Our preset adapter also makes the replacement
  router's gate compute in float32, as Klear's own router does (AutoEP's runs the gate in the
  model's dtype and only the sigmoid in float32).
- DeepSpeed's CPU backend JIT-builds a shared-memory op that our runs never call (25-30 s in CI, on a fresh
  TORCH_EXTENSIONS_DIR) and prints a line from every rank; `skip_cpu_shared_memory_op` replaces its
  `build_shm_op` with the answer it gives where the op is not compatible.
- DeepSpeed Ulysses (sequence parallelism): `equal_size_ulysses_adapter` subclasses
  `UlyssesSPDataLoaderAdapter` and replaces its `refill` (gloo refuses its uneven all-gather), reading the
  groups from `deepspeed.utils.groups`' private getters; `use_equal_size_ulysses_adapter` replaces
  accelerate's `Accelerator.deepspeed_ulysses_dl_adapter` on the trainer's accelerator; `install_packed_sdpa`
  replaces transformers' "sdpa" entry in `ALL_ATTENTION_FUNCTIONS` before Ulysses wraps it.
- TRL's LM-head tiles (`trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE`, the private
  `trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE`): align.plan's memory model reads them here
  (`trl_lm_head_tiles`) instead of copying them.
- TRL's SFT and DPO trainers count `num_tokens` in the private `_total_train_tokens`, which their `__init__`
  resets: `trained_token_count`/`restore_trained_token_count` carry it over a resume.
- transformers: `Trainer._load_from_checkpoint` and `Trainer._load_best_model` are answered without DeepSpeed
  (`ResumeThroughWeightConversion`: a resume, `load_best_model_at_end`): their plain state-dict load skips the
  keys our weight conversion maps.
- transformers: `CONFIG_MAPPING.register` gives a config class a second model_type ("klear" beside the
  official "Klear"; `AutoConfig.register` refuses a name other than the class's own), and
  `AutoModelForCausalLM._model_mapping` finds the class registered for a config (`causal_lm_class`).
- torch: `torch._C._current_graph_task_id()` tells a forward run by the backward pass (gradient
  checkpointing's recompute) from the real one, so expert loads are counted once;
  `Module._non_persistent_buffers_set` tells which buffers a checkpoint holds (`persistent_buffers`).
"""

import importlib
from contextlib import contextmanager
from functools import cache, partial
from types import MethodType

import torch
import torch.nn.functional as F

from align.common import versions

WRITTEN_FOR = {"torch": "2.13.0", "transformers": "5.18.0", "trl": "1.16.0", "deepspeed": "0.19.8"}


def version_differences(installed: dict[str, str | None], written_for: dict[str, str] = WRITTEN_FOR) -> list[str]:
    return versions.version_differences(installed, written_for)


def installed_versions(names=WRITTEN_FOR) -> dict[str, str | None]:
    return versions.installed_versions(names)


def check_versions() -> list[str]:
    return versions.warn_about_differences(
        "align.training.compat", version_differences(installed_versions()),
        "Packed DPO pairs, the precomputed reference under expert parallelism, the Klear AutoEP preset and "
        "the Klear registration may break; the tests in tests/dpo, tests/sft and tests/models tell.")


check_versions()


# ---- torch -------------------------------------------------------------------------------------


def in_backward_pass() -> bool:
    """True while autograd's engine runs (e.g. a checkpointed layer recomputing its forward)."""
    return torch._C._current_graph_task_id() != -1


def persistent_buffers(module: torch.nn.Module):
    """`(name, buffer)` of the module's own buffers that its state_dict holds (not the non-persistent ones),
    without building the state_dict (under ZeRO-3 the caller gathers one module at a time)."""
    for name, buffer in module.named_buffers(recurse=False):
        if buffer is not None and name not in module._non_persistent_buffers_set:
            yield name, buffer


# ---- transformers ------------------------------------------------------------------------------


def register_config_alias(model_type: str, config_class) -> None:
    """Load a config.json whose model_type is `model_type` as `config_class` (whose own model_type differs:
    `AutoConfig.register` would refuse it); idempotent."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    CONFIG_MAPPING.register(model_type, config_class, exist_ok=True)


@contextmanager
def transformers_zero3_off():
    """transformers' ZeRO-3 switch (the `HfDeepSpeedConfig` a DeepSpeed run's TrainingArguments registers, read by
    `is_deepspeed_zero3_enabled`) off for the duration: a model built inside (vLLM's Transformers backend builds
    its own copy with `from_config` on the meta device) is then not partitioned by `deepspeed.zero.Init`, which
    fails on meta tensors ("Cannot copy out of meta tensor")."""
    from transformers.integrations import deepspeed as hf_deepspeed

    registered = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = registered


def causal_lm_class(config):
    """The class `AutoModelForCausalLM` builds for `config`, registered ones included."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM._model_mapping[type(config)]


# ---- TRL ---------------------------------------------------------------------------------------


@cache
def trl_lm_head_tiles() -> tuple[int, int]:
    """(tokens, vocabulary columns) of one tile of TRL's chunked LM head (its fused log-prob head): the
    largest logits block it materialises."""
    from trl.kernels.chunked_logprob import TOKEN_CHUNK_SIZE
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    return TOKEN_CHUNK_SIZE, _CHUNKED_LOGPROB_CHUNK_SIZE


def fused_lm_head_output(**fields):
    """What TRL's DPOTrainer expects back from `model(..., fused_lm_head=True)`."""
    from trl.trainer.utils import FusedCausalLMOutput

    return FusedCausalLMOutput(**fields)


def add_trl_fused_lm_head(model, **options) -> None:
    """TRL's `add_fused_lm_head`: afterwards `model(..., fused_lm_head=True)` returns a `FusedCausalLMOutput`
    (`options`, e.g. `outputs=(...)`, go to TRL)."""
    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(model, **options)


def trl_preference_collator(pad_token_id: int):
    """Stock DPOTrainer's collator: padded prompt + completion batches with TRL's `completion_mask`."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    return DataCollatorForPreference(pad_token_id=pad_token_id)


def route_fused_lm_head(model, fused_forward) -> None:
    """Send TRL's `model(..., fused_lm_head=True)` calls to `fused_forward(model, **kwargs)`; every
    other call (generation, plain forward) goes to the forward TRL left in place."""
    trl_forward = model.forward

    def forward(self, *args, fused_lm_head: bool = False, **kwargs):
        if not fused_lm_head:
            return trl_forward(*args, **kwargs)
        kwargs.pop("num_items_in_batch", None)
        return fused_forward(self, **kwargs)

    model.forward = MethodType(forward, model)


class PrecomputeReferenceWithCopy:
    """DPOTrainer mixin: under expert parallelism, precompute reference log-probs with a fresh copy.

    TRL would wrap the policy itself in a DeepSpeed engine for that pass; AutoEP replaces MoE blocks
    in place, which would leave nothing for the training engine to replace. The subclass provides
    `_load_reference()` and `_uses_expert_parallelism()`.
    """

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if self.ref_model is not None or not self._uses_expert_parallelism():
            return super()._precompute_ref_logps(dataset, name, batch_size)
        from trl.models.utils import prepare_deepspeed

        reference = self._load_reference()
        add_trl_fused_lm_head(reference)
        self._on_fused_lm_head(reference)
        self.ref_model = prepare_deepspeed(reference, self.accelerator)
        try:
            return super()._precompute_ref_logps(dataset, name, batch_size)
        finally:
            self.ref_model = None

    def _on_fused_lm_head(self, model) -> None:
        """Called after TRL's fused LM head is added to the copy (packed pairs hook in here)."""


def wake_colocated_engine(generation) -> None:
    """Before a weight load into a colocated engine: TRL 1.16's sleep-mode wake-up, as its own
    `VLLMGeneration.sync_weights` does it (its module's `empty_cache`, its `_llm_weights_sleeping` flag)."""
    from trl.generation.vllm_generation import empty_cache

    if generation.enable_sleep_mode:
        empty_cache()
        generation.llm.wake_up(tags=["weights"])
        generation._llm_weights_sleeping = False


def trl_vllm_named_params(generation):
    """TRL 1.16's walk of the policy for vLLM (`VLLMGeneration._iter_named_params`: ZeRO-3 gathers one parameter at
    a time, PEFT merges, vLLM's names); collective, every rank iterates."""
    return generation._iter_named_params()


@contextmanager
def trl_vllm_generation(engine_options: dict, client_class=None):
    """While `GRPOTrainer.__init__` builds TRL 1.16's `VLLMGeneration`, its `_init_vllm` calls its module's `LLM`
    (colocate mode) with extra options (`engine_options`, e.g. `enforce_eager`: TRL passes a fixed set), and builds
    a server's client from `client_class` (server mode: `align.rl.vllm_client.KlearVLLMClient`; None keeps TRL's
    `VLLMClient`)."""
    from trl.generation import vllm_generation

    build, client = vllm_generation.LLM, vllm_generation.VLLMClient
    vllm_generation.LLM = partial(build, **engine_options)
    vllm_generation.VLLMClient = client_class or client
    try:
        yield
    finally:
        vllm_generation.LLM, vllm_generation.VLLMClient = build, client


class GRPOHooks:
    """GRPOTrainer mixin (put it right before `GRPOTrainer`). The subclass provides `_gppo_loss(inputs,
    per_token_logps, entropies, aux_loss)` and `_on_scored_batch(batch) -> batch`."""

    def _compute_loss(self, model, inputs):
        if self.loss_type != "gppo":
            return super()._compute_loss(model, inputs)
        prompt_ids, completion_ids = inputs["prompt_ids"], inputs["completion_ids"]
        per_token_logps, entropies, aux_loss = self._get_per_token_logps_and_entropies(
            model,
            torch.cat([prompt_ids, completion_ids], dim=1),
            torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1),
            completion_ids.size(1),
            compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled,
        )
        return self._gppo_loss(inputs, per_token_logps, entropies, aux_loss)

    def _generate_and_score_completions(self, inputs):
        # TRL adds every rollout's tokens to num_input_tokens_seen; `_on_scored_batch` adds the ones trained on.
        tokens_seen = self.state.num_input_tokens_seen
        batch = super()._generate_and_score_completions(inputs)
        self.state.num_input_tokens_seen = tokens_seen
        return self._on_scored_batch(batch)

    def _generate_single_turn(self, *args, **kwargs):
        # Eval mode (and no router logits) around the generation forwards only: TRL's `_generate` reads
        # `self.model.training` for its train/eval bookkeeping (metrics, token count, num_generations).
        model = self.accelerator.unwrap_model(self.model)
        config = model.config.get_text_config()
        router_logits = getattr(config, "output_router_logits", None)
        was_training = model.training
        if router_logits:
            config.output_router_logits = False
        model.eval()
        try:
            return super()._generate_single_turn(*args, **kwargs)
        finally:
            if router_logits:
                config.output_router_logits = router_logits
            model.train(was_training)

    def _record_metric(self, name: str, value: float) -> None:
        self._metrics["train" if self.model.training else "eval"][name].append(value)

    def _set_metric(self, name: str, value: float) -> None:
        """A running total's current value (TRL averages what a metric collected since the last log)."""
        self._metrics["train" if self.model.training else "eval"][name] = [value]

    def _last_rollouts(self) -> list[dict]:
        """The generation batch just scored, over all ranks: prompt, completion, each reward, advantage, and the
        columns reward functions logged through `log_extra`."""
        logs = self._logs
        count = self.args.generation_batch_size
        prompts, completions = list(logs["prompt"])[-count:], list(logs["completion"])[-count:]
        rewards = {name: list(values)[-count:] for name, values in logs["rewards"].items()}
        extra = {name: list(values)[-count:] for name, values in logs["extra"].items()}
        advantages = list(logs["advantages"])[-count:]
        rows = []
        for i in range(len(prompts)):
            row = {"prompt": prompts[i], "completion": completions[i],
                   "rewards": {name: values[i] for name, values in rewards.items()}, "advantage": advantages[i]}
            row.update({name: values[i] for name, values in extra.items() if i < len(values)})
            rows.append(row)
        return rows


# ---- DeepSpeed AutoEP --------------------------------------------------------------------------


def _linear_in_float32(self, x):
    return F.linear(x.float(), self.weight.float(), None if self.bias is None else self.bias.float())


def compute_gate_in_float32(gate: torch.nn.Linear) -> None:
    """Make an AutoEP router's gate (`nn.Linear`, in the model's dtype) compute its logits in float32."""
    gate.forward = MethodType(_linear_in_float32, gate)


def register_autoep_preset(name: str, display_name: str, model_types: tuple[str, ...], **preset) -> None:
    """Register an AutoEP preset (`"preset_model": name`) whose replacement router computes its gate
    in float32; idempotent."""
    from deepspeed.module_inject.auto_ep_presets import registry
    from deepspeed.module_inject.auto_ep_presets.base import MoEModelPreset, TransformersTopLevelRouterLogitsAdapter

    class Float32RouterAdapter(TransformersTopLevelRouterLogitsAdapter):
        # Called once for every block AutoEP replaces, before the first forward.
        def retarget_transformers_output_recorders(self, model, spec, replacement, *args, **kwargs):
            compute_gate_in_float32(replacement.router.gate)
            return super().retarget_transformers_output_recorders(model, spec, replacement, *args, **kwargs)

    if name in registry.PRESET_MODELS:
        return
    registry._PRESET_ADAPTERS[name] = Float32RouterAdapter(
        display_name=display_name, hf_model_types=model_types, class_name_fragments=(display_name,)
    )
    registry.PRESET_MODELS[name] = MoEModelPreset(preset_adapter=name, hf_model_types=model_types, **preset)


def skip_cpu_shared_memory_op() -> None:
    """DeepSpeed 0.19.8's communication backend (`deepspeed/comm/torch.py`: `TorchBackend.__init__` calls
    `build_shm_op`) JIT-builds, under the CPU accelerator (the only one with a `ShareMemCommBuilder`), a C++
    shared-memory op with ninja into TORCH_EXTENSIONS_DIR (a later launch loads it from there), and each rank
    prints "... built successfully". The first launch on a fresh TORCH_EXTENSIONS_DIR pays for the build (25-30 s in CI; locally,
    a checkout at another path rebuilds it, its source paths being the build's inputs). Only
    `inference_all_reduce` (AutoTP's inference layers) uses the op; our CPU runs train over gloo's
    all_reduce / all_gather / reduce_scatter. No documented switch skips the build (DS_BUILD_SHM_COMM pre-builds
    at install time), so `build_shm_op` answers None, as it does where the op is not compatible: DeepSpeed's own
    fallback, `inference_all_reduce` over the process group. Idempotent."""
    # not `import deepspeed.comm.torch as ...`: that name resolves to the `torch` that deepspeed.comm imports
    backend = importlib.import_module("deepspeed.comm.torch")
    backend.build_shm_op = no_shared_memory_op


def no_shared_memory_op() -> None:
    """`build_shm_op` where the op is not compatible: no op, gloo does every collective."""
    return None


def autoep_layers(model) -> list:
    """DeepSpeed's `AutoEPMoELayer` modules in `model` (none when DeepSpeed is not installed)."""
    try:
        from deepspeed.module_inject.auto_ep_layer import AutoEPMoELayer
    except ImportError:
        return []
    return [m for m in model.modules() if isinstance(m, AutoEPMoELayer)]


def autoep_experts_for_rank(layer, rank: int) -> list[int]:
    """The global expert indices an AutoEP layer places on expert-parallel `rank`."""
    from deepspeed.checkpoint.autoep_affine import autoep_experts_for_rank as placement

    return list(placement(layer.expert_placement_descriptor, rank))


def autoep_routers(model) -> list[tuple[torch.nn.Module, int]]:
    """`(router, i)` for every AutoEP layer: `router(x)[i]` holds the chosen experts `[tokens, top_k]`
    (`TokenChoiceTopKRouter` returns `(weights, experts, counts)`)."""
    return [(layer.router, 1) for layer in autoep_layers(model)]


# ---- DeepSpeed Ulysses sequence parallelism ----------------------------------------------------

# Keys of TRL's padding-free collator that describe the whole row's documents for varlen kernels; a slice of
# them means nothing, and the attention below finds the documents in the gathered `position_ids` instead.
_VARLEN_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx")
# Padding added to make a row divisible by the group size: what each key is padded with.
_PAD_VALUES = {"labels": -100, "position_ids": 0, "attention_mask": 0, "input_ids": 0}
# Added to every sequence-parallel micro-batch: True on the row's own tokens, False on that padding. The trainer
# pops it before the forward (the expert-load counter skips the padding).
REAL_TOKENS_KEY = "sequence_parallel_real_tokens"


def _pad_to(tensor: torch.Tensor, length: int, value) -> torch.Tensor:
    return F.pad(tensor, (0, length - tensor.shape[1]), value=value)


def equal_size_ulysses_adapter(dataloader, sp_rank: int, sp_group, sp_world_size: int, device):
    """DeepSpeed's `UlyssesSPDataLoaderAdapter` (deepspeed/runtime/sequence_parallel/ulysses_sp.py), with
    three changes:

    - its `refill` all-gathers every rank's batch with tensors of each rank's own length; gloo refuses that
      (`ProcessGroupGloo::allgather: invalid tensor size`), so rows are padded to the group's longest for the
      gather and cut back to their own length after it (the same micro-batches as on NCCL);
    - a row is padded to a multiple of the group size (labels -100, positions continuing its last document)
      instead of refused, and `REAL_TOKENS_KEY` marks that padding;
    - the padding-free collator's varlen keys are dropped (they would be sliced like tokens).
    """
    from deepspeed.runtime.sequence_parallel.ulysses_sp import UlyssesSPDataLoaderAdapter

    class EqualSizeUlyssesAdapter(UlyssesSPDataLoaderAdapter):
        def refill(self):
            import deepspeed.comm as dist

            try:
                batch = next(self.iter)
            except StopIteration:
                self.iter = iter(self.dl)
                raise
            if "position_ids" not in batch:
                raise ValueError("sequence parallelism needs position_ids in every batch (TRL's collator adds them)")
            batch = {k: v for k, v in batch.items() if k not in _VARLEN_KEYS}
            length = batch["input_ids"].shape[1]
            padded = -(-length // self.sp_world_size) * self.sp_world_size
            batch[REAL_TOKENS_KEY] = torch.ones_like(batch["input_ids"], dtype=torch.bool)
            positions = batch.pop("position_ids")
            batch = {k: _pad_to(v, padded, _PAD_VALUES.get(k, 0)) if torch.is_tensor(v) else v
                     for k, v in batch.items()}
            # The padding continues the row's last document (after it, so causally invisible to it): a position 0
            # would start a document of its own and make the attention build a block mask for nothing.
            batch["position_ids"] = torch.cat(
                [positions, positions[:, -1:] + torch.arange(1, padded - length + 1)], dim=1)

            lengths = [torch.zeros(1, dtype=torch.int64, device=self.device) for _ in range(self.sp_world_size)]
            dist.all_gather(lengths, torch.full((1,), padded, dtype=torch.int64, device=self.device),
                            group=self.sp_group)
            lengths = [int(x[0]) for x in lengths]
            longest = max(lengths)
            gathered = [{} for _ in range(self.sp_world_size)]
            for key, value in batch.items():
                if torch.is_tensor(value):
                    value = _pad_to(value.to(self.device), longest, _PAD_VALUES.get(key, 0))
                    parts = [torch.empty_like(value) for _ in range(self.sp_world_size)]
                    dist.all_gather(parts, value, group=self.sp_group)
                    parts = [part[:, :n] for part, n in zip(parts, lengths, strict=True)]
                else:
                    parts = [None] * self.sp_world_size
                    dist.all_gather_object(parts, value, group=self.sp_group)
                for rank, part in enumerate(parts):
                    gathered[rank][key] = part

            for micro_batch in gathered:
                chunk = micro_batch["input_ids"].shape[1] // self.sp_world_size
                # the loss is computed per slice, so each slice needs its own next-token labels
                labels = F.pad(micro_batch.pop("labels"), (0, 1), value=-100)
                micro_batch["shift_labels"] = labels[..., 1:].contiguous()
                for key, value in micro_batch.items():
                    if torch.is_tensor(value):
                        micro_batch[key] = value[:, chunk * self.sp_rank: chunk * (self.sp_rank + 1)].cpu()
                self.micro_batches.append(micro_batch)

    return EqualSizeUlyssesAdapter(dataloader, sp_rank=sp_rank, sp_group=sp_group, sp_world_size=sp_world_size,
                                   device=device)


def use_equal_size_ulysses_adapter(accelerator) -> None:
    """Make `accelerator.deepspeed_ulysses_dl_adapter` (called by transformers' Trainer once the model is
    prepared, trainer.py `_inner_training_loop`) wrap the training batches in `equal_size_ulysses_adapter`."""
    from deepspeed.utils import groups

    def adapter(self, dataloader, model):
        return equal_size_ulysses_adapter(
            dataloader, sp_rank=groups._get_sequence_parallel_rank(), sp_group=groups._get_sequence_parallel_group(),
            sp_world_size=groups._get_sequence_parallel_world_size(), device=model.device,
        )

    accelerator.deepspeed_ulysses_dl_adapter = MethodType(adapter, accelerator)


def documents_from_position_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """`[batch, seq]` document index of each token: a new document starts wherever the position is 0."""
    return (position_ids == 0).cumsum(-1)


def packed_sdpa(sdpa):
    """transformers' `sdpa` attention, for the full sequence Ulysses gathers: Ulysses drops the model's mask
    (it was built for the slice) and sdpa then falls back to one causal mask over the row, which lets the
    documents of a padding-free row attend to each other. With several documents in the gathered
    `position_ids`, this builds the block-diagonal causal mask from them; otherwise it is sdpa unchanged."""

    def attention(module, query, key, value, attention_mask, *args, position_ids=None, **kwargs):
        if attention_mask is None and position_ids is not None and query.shape[2] == position_ids.shape[-1] and bool(
            (position_ids[:, 1:] == 0).any()
        ):
            documents = documents_from_position_ids(position_ids)
            length = position_ids.shape[-1]
            causal = torch.ones(length, length, dtype=torch.bool, device=query.device).tril()
            attention_mask = (documents[:, None, :, None] == documents[:, None, None, :]) & causal
        return sdpa(module, query, key, value, attention_mask, *args, position_ids=position_ids, **kwargs)

    attention.packed = True
    return attention


def install_packed_sdpa() -> None:
    """Put `packed_sdpa` under transformers' "sdpa" attention key, before DeepSpeed's Ulysses wraps that key
    (`UlyssesSPAttentionHF.register_with_transformers`, called from `accelerator.prepare`). Idempotent."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    current = ALL_ATTENTION_FUNCTIONS["sdpa"]
    if not getattr(current, "packed", False):
        ALL_ATTENTION_FUNCTIONS["sdpa"] = packed_sdpa(current)


# ---- TRL: the token count after a resume --------------------------------------------------------


def trained_token_count(trainer) -> int:
    """The count a TRL trainer logs as `num_tokens`: SFT's and DPO's private `_total_train_tokens` (their
    `__init__` sets it to 0, so a resumed run would count from there), GRPO's `state.num_input_tokens_seen`
    (the RL trainer's count, which the Trainer restores with the rest of its state)."""
    from trl import GRPOTrainer

    if isinstance(trainer, GRPOTrainer):
        return int(trainer.state.num_input_tokens_seen)
    return int(trainer._total_train_tokens)


def restore_trained_token_count(trainer, tokens: int) -> None:
    """Continue SFT's/DPO's `num_tokens` from a checkpoint's count (GRPO's comes back with the trainer state)."""
    from trl import GRPOTrainer

    if not isinstance(trainer, GRPOTrainer):
        trainer._total_train_tokens = tokens


# ---- transformers: resuming a run without DeepSpeed ------------------------------------------------


class ResumeThroughWeightConversion:
    """Without DeepSpeed, `Trainer._load_from_checkpoint` (a resume) and `Trainer._load_best_model`
    (`load_best_model_at_end`) read `model.safetensors` with a plain `load_state_dict(strict=False)`. A checkpoint
    is saved in the official Klear layout (per-expert names, the bias as `mlp.expert_bias`), which transformers'
    weight conversion maps onto our fused modules only in `from_pretrained`: the plain load skipped every routed
    expert and the expert bias with a warning, and the run went on from (or ended with) the experts in memory.
    Here the checkpoint is loaded through `from_pretrained` (a second copy of the model in CPU memory, once: runs
    without DeepSpeed are the small ones) and copied in, strictly. LoRA adapters and DeepSpeed's own states
    keep the Trainer's path."""

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        if not self._load_through_weight_conversion(resume_from_checkpoint, model if model is not None else self.model):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self) -> None:
        if not self._load_through_weight_conversion(self.state.best_model_checkpoint, self.model):
            super()._load_best_model()

    def _load_through_weight_conversion(self, checkpoint: str, model) -> bool:
        """Copy `checkpoint`'s weights into `model`; False (nothing loaded) where the Trainer's own load applies."""
        from pathlib import Path

        target = self.accelerator.unwrap_model(model)
        folder = Path(checkpoint)
        weights = (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()
        if self.is_deepspeed_enabled or hasattr(target, "peft_config") or not weights:
            return False
        saved = type(target).from_pretrained(str(folder), dtype=target.dtype, device_map="cpu")
        target.load_state_dict(saved.state_dict(), strict=True)
        del saved
        return True
