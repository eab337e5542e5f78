"""klear-align: preference alignment for the Klear MoE.

Importing `align` registers the Klear model (model_type "Klear"/"klear") with transformers'
`AutoConfig` / `AutoModelForCausalLM`, so plain `from_pretrained` loads Klear checkpoints.
"""

from align.models import klear as _klear  # noqa: F401  (registers the model)
