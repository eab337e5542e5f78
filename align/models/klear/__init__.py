"""The Klear MoE model, registered with transformers' Auto classes and weight conversion."""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
from transformers.conversion_mapping import register_checkpoint_conversion_mapping

from align.training.compat import register_config_alias

from .configuration_klear import KlearConfig
from .modeling_klear import (
    KLEAR_CHECKPOINT_CONVERSION,
    KlearModel,
    KlearMoeForCausalLM,
    KlearPreTrainedModel,
    KlearRouter,
    KlearSparseMoeBlock,
)


def register() -> None:
    """Register "Klear" (the official model_type) and "klear" with transformers; idempotent.

    A config.json saying "klear" loads as `KlearConfig` and is saved back as the official "Klear".
    """
    AutoConfig.register(KlearConfig.model_type, KlearConfig, exist_ok=True)
    register_config_alias("klear", KlearConfig)
    AutoModel.register(KlearConfig, KlearModel, exist_ok=True)
    AutoModelForCausalLM.register(KlearConfig, KlearMoeForCausalLM, exist_ok=True)
    for model_type in ("Klear", "klear"):
        register_checkpoint_conversion_mapping(model_type, list(KLEAR_CHECKPOINT_CONVERSION), overwrite=True)


register()

__all__ = [
    "KlearConfig",
    "KlearModel",
    "KlearMoeForCausalLM",
    "KlearPreTrainedModel",
    "KlearRouter",
    "KlearSparseMoeBlock",
    "register",
]
