"""The one place that touches private or undocumented APIs of TRL, DeepSpeed and torch.

Written for (and tested with) the versions in `WRITTEN_FOR`; `check_versions()` runs on import and
warns once, naming each difference, when the installed versions are others. What is used, and why:

- TRL: DPOTrainer calls the model as `model(..., fused_lm_head=True)` after `add_fused_lm_head`
  patched it (trl/trainer/utils.py), and expects a `FusedCausalLMOutput`. Packed pairs answer that
  call (`route_fused_lm_head`). `DPOTrainer._precompute_ref_logps` is overridden
  (`PrecomputeReferenceWithCopy`) because under AutoEP it would wrap the policy itself in a second
  DeepSpeed engine. `trl.models.utils.prepare_deepspeed` wraps that reference copy.
- DeepSpeed AutoEP: presets are registered in `auto_ep_presets.registry` (`PRESET_MODELS` and the
  private `_PRESET_ADAPTERS`); `AutoEPMoELayer`, its router (`TokenChoiceTopKRouter`) and
  `autoep_experts_for_rank` are internal modules. Our preset adapter also makes the replacement
  router's gate compute in float32, as Klear's own router does (AutoEP's runs the gate in the
  model's dtype and only the sigmoid in float32).
- DeepSpeed's CPU backend prints a line from every rank when it builds its shared-memory op;
  `silence_cpu_backend_notice` drops it.
- torch: `torch._C._current_graph_task_id()` tells a forward run by the backward pass (gradient
  checkpointing's recompute) from the real one, so expert loads are counted once.
"""

import importlib.metadata
import re
import warnings
from types import MethodType

import torch
import torch.nn.functional as F

WRITTEN_FOR = {"torch": "2.13.0", "transformers": "5.18.0", "trl": "1.16.0", "deepspeed": "0.19.8"}


def version_differences(installed: dict[str, str | None], written_for: dict[str, str] = WRITTEN_FOR) -> list[str]:
    """`"trl 1.17.0 (written for 1.16.0)"` for each package whose release differs (local tags like
    `+cpu` ignored); a package that is not installed is not a difference."""
    differences = []
    for name, expected in written_for.items():
        found = installed.get(name)
        if found is not None and re.split(r"[+]", found)[0] != expected:
            differences.append(f"{name} {found} (written for {expected})")
    return differences


def installed_versions(names=WRITTEN_FOR) -> dict[str, str | None]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def check_versions() -> list[str]:
    differences = version_differences(installed_versions())
    if differences:
        warnings.warn(
            "align.training.compat touches private APIs of these packages and was written for other versions: "
            + "; ".join(differences) + ". Packed DPO pairs, the precomputed reference under expert parallelism "
            "and the Klear AutoEP preset may break; the tests in tests/dpo and tests/sft tell.",
            RuntimeWarning,
            stacklevel=2,
        )
    return differences


check_versions()


# ---- torch -------------------------------------------------------------------------------------


def in_backward_pass() -> bool:
    """True while autograd's engine runs (e.g. a checkpointed layer recomputing its forward)."""
    return torch._C._current_graph_task_id() != -1


# ---- TRL ---------------------------------------------------------------------------------------


def fused_lm_head_output(**fields):
    """What TRL's DPOTrainer expects back from `model(..., fused_lm_head=True)`."""
    from trl.trainer.utils import FusedCausalLMOutput

    return FusedCausalLMOutput(**fields)


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
        from trl.trainer.utils import add_fused_lm_head

        reference = self._load_reference()
        add_fused_lm_head(reference)
        self._on_fused_lm_head(reference)
        self.ref_model = prepare_deepspeed(reference, self.accelerator)
        try:
            return super()._precompute_ref_logps(dataset, name, batch_size)
        finally:
            self.ref_model = None

    def _on_fused_lm_head(self, model) -> None:
        """Called after TRL's fused LM head is added to the copy (packed pairs hook in here)."""


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


def silence_cpu_backend_notice() -> None:
    """DeepSpeed's CPU communication backend prints "DeepSpeed deepspeed.ops.comm.deepspeed_shm_comm_op
    built successfully" from every rank (a bare `print` in `deepspeed/comm/torch.py:build_shm_op`); keep
    the build, drop the print. Idempotent."""
    import contextlib
    import io

    # not `import deepspeed.comm.torch as ...`: that name resolves to the `torch` that deepspeed.comm imports
    backend = importlib.import_module("deepspeed.comm.torch")

    build = backend.build_shm_op
    if getattr(build, "quiet", False):
        return

    def quiet_build():
        with contextlib.redirect_stdout(io.StringIO()):
            return build()

    quiet_build.quiet = True
    backend.build_shm_op = quiet_build


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
