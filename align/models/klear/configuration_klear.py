"""Configuration of Kuaishou's Klear sparse Mixture-of-Experts decoder (Klear-46B-A2.5B).

The defaults are the released `Kwai-Klear/Klear-46B-A2.5B-Instruct` config.json, so
`KlearConfig()` describes the real model and the tiny test models override only sizes.
"""

from huggingface_hub.dataclasses import strict
from transformers.configuration_utils import PreTrainedConfig
from transformers.modeling_rope_utils import RopeParameters


@strict
class KlearConfig(PreTrainedConfig):
    r"""
    Klear-specific fields (the rest mean what they mean in Qwen3-MoE):

    num_experts: routed experts per sparse layer (256).
    num_experts_per_tok: experts chosen per token (8).
    n_shared_experts: width multiplier of the always-on shared expert (its intermediate size is
        `moe_intermediate_size * n_shared_experts`).
    norm_topk_prob: renormalise the chosen experts' sigmoid scores to sum to 1.
    decoder_sparse_step / mlp_only_layers: which layers are sparse; a layer is sparse when
        `layer_idx not in mlp_only_layers and num_experts > 0 and (layer_idx + 1) % decoder_sparse_step == 0`,
        otherwise it has a dense SwiGLU MLP of `intermediate_size`.
    router_aux_loss_coef: weight of the load-balancing auxiliary loss added to the LM loss when
        `output_router_logits` is on (training).
    moe_aux_loss_coeff: declared by the released config; no released implementation uses it, and
        neither does this one (only `router_aux_loss_coef` weighs the auxiliary loss).
    routed_scaling_factor: declared by the released config (2.5) but applied by no released
        implementation; this implementation reads it and does not apply it either, so outputs match
        the released checkpoints.
    """

    model_type = "Klear"
    keys_to_ignore_at_inference = ["past_key_values"]
    default_theta = 500000.0

    vocab_size: int = 151936
    hidden_size: int = 2048
    intermediate_size: int = 8064
    moe_intermediate_size: int = 896
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 4
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 65536
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-5
    use_cache: bool = True
    tie_word_embeddings: bool = False
    rope_parameters: RopeParameters | dict | None = None
    attention_bias: bool = False
    attention_dropout: float | int = 0.0
    num_experts: int = 256
    num_experts_per_tok: int = 8
    n_shared_experts: int = 1
    norm_topk_prob: bool = True
    decoder_sparse_step: int = 1
    mlp_only_layers: list[int] | None = None
    output_router_logits: bool = False
    router_aux_loss_coef: float = 0.001
    moe_aux_loss_coeff: float = 0.0001
    routed_scaling_factor: float = 2.5
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        self.mlp_only_layers = [] if self.mlp_only_layers is None else list(self.mlp_only_layers)
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        # Qwen3-MoE's attention reads it; Klear has no sliding-window attention.
        self.sliding_window = None
        super().__post_init__(**kwargs)

    def is_sparse_layer(self, layer_idx: int) -> bool:
        return (
            layer_idx not in self.mlp_only_layers
            and self.num_experts > 0
            and (layer_idx + 1) % self.decoder_sparse_step == 0
        )

    def to_dict(self):
        # The released config.json carries `rope_theta` at the top level, and serving engines that
        # know Klear read it from there; transformers 5 keeps it inside `rope_parameters`.
        output = super().to_dict()
        if isinstance(output.get("rope_parameters"), dict) and "rope_theta" in output["rope_parameters"]:
            output["rope_theta"] = output["rope_parameters"]["rope_theta"]
        return output
