"""The DPO trainer: TRL's DPOTrainer with packed pairs, Klear's MoE metrics, bias update and
gathering save. What it needs from TRL beyond the public API sits in `align.training.compat`."""

from trl import DPOTrainer

from align.dpo.packing import use_packed_pairs
from align.training.autoep import expert_parallel_section
from align.training.compat import PrecomputeReferenceWithCopy
from align.training.trainer import KlearTrainerMixin


class KlearDPOTrainer(KlearTrainerMixin, PrecomputeReferenceWithCopy, DPOTrainer):
    """`load_reference` loads a fresh copy of the starting model: under expert parallelism the
    reference log-probs are precomputed with it (see `PrecomputeReferenceWithCopy`)."""

    def __init__(self, *args, load_reference=None, **kwargs):
        self._reference_loader = load_reference
        super().__init__(*args, **kwargs)
        if self.args.packed_pairs:
            for model in (self.model, self.ref_model):
                if model is not None:
                    self._on_fused_lm_head(model)

    def _load_reference(self):
        return self._reference_loader()

    def _uses_expert_parallelism(self) -> bool:
        plugin = self.accelerator.state.deepspeed_plugin
        return expert_parallel_section(plugin.deepspeed_config if plugin else None) is not None

    def _on_fused_lm_head(self, model) -> None:
        if self.args.packed_pairs:
            use_packed_pairs(_causal_lm(model), share_prompt=self.args.share_prompt)


def _causal_lm(model):
    """The module TRL patched with its fused LM head, under a DeepSpeed engine or a PEFT wrapper."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model
