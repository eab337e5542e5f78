"""Klear sparse Mixture-of-Experts decoder, native to transformers (no remote code).

Architecture (Kwai-Klear/Klear-46B-A2.5B): Qwen3-style attention (GQA, per-head RMSNorm on q and
k before RoPE) and, in sparse layers, a block that blends routed and shared experts:

    logits  = gate(x)                       # float32, [num_experts]
    scores  = sigmoid(logits)
    chosen  = topk(scores + expert_bias, k)  # the bias (aux-loss-free balancing) only picks experts...
    w       = scores[chosen] (/ sum)         # ...the weights come from the unbiased scores
    routed  = sum_k w_k * expert_k(x)
    shared  = shared_experts(x)
    coef    = softmax(coefficient(x))        # Linear(hidden, 2) with bias
    out     = routed * coef[0] + shared * coef[1]

In memory the routed part (router, expert bias, experts) is one submodule, `mlp.routed`, so that
expert-parallel engines can replace it while the shared expert and the blend stay here. The experts
are fused 3D tensors computed through transformers' experts interface (`grouped_mm` by default,
`batched_mm`, or `eager`, a plain loop over the experts hit). Checkpoints keep the official
per-expert key names: `KLEAR_CHECKPOINT_CONVERSION` fuses them on load and splits them on save.

Auxiliary loss: the load-balancing loss of Switch/Mixtral (transformers' `load_balancing_loss_func`,
softmax over the router logits), weighted by `router_aux_loss_coef`. It is the loss TRL's trainers
add for every MoE through their fused LM head, so this forward returns the same one. Klear's own
training loss is not public; the sigmoid router's real balancing lever is the expert bias, which
`align`'s `expert_bias_update: aux_free` adjusts the auxiliary-loss-free way.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.core_model_loading import Concatenate, MergeModulelist, WeightConverter, WeightRenaming
from transformers.generation import GenerationMixin
from transformers.integrations import use_experts_implementation
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import MoeCausalLMOutputWithPast, MoeModelOutputWithPast
from transformers.modeling_utils import PreTrainedModel
from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func
from transformers.models.qwen3_moe.modeling_qwen3_moe import (
    Qwen3MoeAttention,
    Qwen3MoeMLP,
    Qwen3MoeRMSNorm,
    Qwen3MoeRotaryEmbedding,
)
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_klear import KlearConfig

# Official checkpoint keys <-> in-memory keys. Renamings reverse on save, and the expert
# converters split the fused tensors back into per-expert keys.
KLEAR_CHECKPOINT_CONVERSION = [
    WeightConverter(
        source_patterns=["mlp.experts.*.gate_proj.weight", "mlp.experts.*.up_proj.weight"],
        target_patterns="mlp.routed.experts.gate_up_proj",
        operations=[MergeModulelist(dim=0), Concatenate(dim=1)],
    ),
    WeightConverter(
        source_patterns="mlp.experts.*.down_proj.weight",
        target_patterns="mlp.routed.experts.down_proj",
        operations=[MergeModulelist(dim=0)],
    ),
    WeightRenaming(r"mlp\.gate\.weight$", "mlp.routed.gate.weight"),
    WeightRenaming(r"mlp\.expert_bias$", "mlp.routed.gate.e_score_correction_bias"),
]


class KlearRMSNorm(Qwen3MoeRMSNorm):
    pass


class KlearMLP(Qwen3MoeMLP):
    """Dense SwiGLU MLP: the shared expert, and the MLP of layers listed in `mlp_only_layers`."""


class KlearAttention(Qwen3MoeAttention):
    """GQA with RMSNorm on each head of q and k before RoPE: exactly Qwen3's attention."""


class KlearRotaryEmbedding(Qwen3MoeRotaryEmbedding):
    pass


class KlearRouter(nn.Module):
    """Sigmoid router with an auxiliary-loss-free balancing bias.

    Returns `(router_logits, top_k_weights, top_k_index)`. The bias (`e_score_correction_bias`,
    the official `mlp.expert_bias`) shifts which experts are chosen, never their weights. It is a
    buffer: the optimiser does not touch it; `align`'s bias-update callback may. It stays float32 in
    a bf16/fp16 model (`_keep_in_fp32_modules_strict`): a 1e-3 balancing step is below bf16's
    resolution once |bias| >= 0.25.

    Expert loads are counted outside the model, by forward hooks (`align.training.moe`).
    """

    def __init__(self, config: KlearConfig):
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.num_experts = config.num_experts
        self.norm_topk_prob = config.norm_topk_prob
        self.hidden_dim = config.hidden_size
        self.weight = nn.Parameter(torch.zeros(self.num_experts, self.hidden_dim))
        self.e_score_correction_bias = nn.Buffer(torch.zeros(self.num_experts, dtype=torch.float32))

    def forward(self, hidden_states: torch.Tensor):
        hidden_states = hidden_states.reshape(-1, self.hidden_dim)
        router_logits = F.linear(hidden_states.float(), self.weight.float())
        scores = router_logits.sigmoid()
        _, top_k_index = torch.topk(scores + self.e_score_correction_bias.float(), self.top_k, dim=-1)
        top_k_weights = scores.gather(-1, top_k_index)
        if self.norm_topk_prob:
            top_k_weights = top_k_weights / top_k_weights.sum(dim=-1, keepdim=True)
        return router_logits, top_k_weights.to(hidden_states.dtype), top_k_index


@use_experts_implementation
class KlearExperts(nn.Module):
    """The routed experts as fused tensors: `gate_up_proj` [E, 2I, H] and `down_proj` [E, H, I].

    This `forward` is the `eager` implementation, a loop over the experts that received tokens;
    `grouped_mm` and `batched_mm` from transformers' experts interface replace it by configuration.
    """

    def __init__(self, config: KlearConfig):
        super().__init__()
        self.num_experts = config.num_experts
        self.hidden_dim = config.hidden_size
        self.intermediate_dim = config.moe_intermediate_size
        self.gate_up_proj = nn.Parameter(torch.empty(self.num_experts, 2 * self.intermediate_dim, self.hidden_dim))
        self.down_proj = nn.Parameter(torch.empty(self.num_experts, self.hidden_dim, self.intermediate_dim))
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states, top_k_index, top_k_weights):
        output = torch.zeros_like(hidden_states)
        for expert_idx in top_k_index.unique().tolist():
            if expert_idx >= self.num_experts:  # expert-parallel sentinel: not on this rank
                continue
            token_idx, slot = torch.where(top_k_index == expert_idx)
            gate, up = F.linear(hidden_states[token_idx], self.gate_up_proj[expert_idx]).chunk(2, dim=-1)
            expert_out = F.linear(self.act_fn(gate) * up, self.down_proj[expert_idx])
            output.index_add_(0, token_idx, (expert_out * top_k_weights[token_idx, slot, None]).to(output.dtype))
        return output


class KlearRoutedExperts(nn.Module):
    """Router + experts: the part of a sparse block that expert parallelism distributes."""

    def __init__(self, config: KlearConfig):
        super().__init__()
        self.gate = KlearRouter(config)
        self.experts = KlearExperts(config)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        _, top_k_weights, top_k_index = self.gate(flat)
        return self.experts(flat, top_k_index, top_k_weights).reshape(hidden_states.shape)


class KlearSparseMoeBlock(nn.Module):
    """Routed experts blended with the shared expert by a learned softmax (not summed)."""

    def __init__(self, config: KlearConfig):
        super().__init__()
        self.routed = KlearRoutedExperts(config)
        self.shared_experts = KlearMLP(config, intermediate_size=config.moe_intermediate_size * config.n_shared_experts)
        self.coefficient = nn.Linear(config.hidden_size, 2, bias=True)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        routed = self.routed(hidden_states)
        shared = self.shared_experts(hidden_states)
        coef = F.softmax(self.coefficient(hidden_states), dim=-1, dtype=torch.float32).to(hidden_states.dtype)
        return routed * coef[..., 0:1] + shared * coef[..., 1:2]


class KlearDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: KlearConfig, layer_idx: int):
        super().__init__()
        self.self_attn = KlearAttention(config, layer_idx)
        if config.is_sparse_layer(layer_idx):
            self.mlp = KlearSparseMoeBlock(config)
        else:
            self.mlp = KlearMLP(config, intermediate_size=config.intermediate_size)
        self.input_layernorm = KlearRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = KlearRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool | None = False,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        residual = hidden_states
        hidden_states, _ = self.self_attn(
            hidden_states=self.input_layernorm(hidden_states),
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            position_embeddings=position_embeddings,
            **kwargs,
        )
        hidden_states = residual + hidden_states
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class KlearPreTrainedModel(PreTrainedModel):
    config: KlearConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["KlearDecoderLayer"]
    # Kept in float32 in a bf16/fp16 model, in memory and in saved checkpoints (as DeepSeek-V3 does);
    # DeepSpeed's ZeRO-3 bf16 reads the same list (deepspeed/runtime/keep_in_fp32.py).
    _keep_in_fp32_modules_strict = ["e_score_correction_bias"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {
        "router_logits": OutputRecorder(KlearRouter, index=0),
        "hidden_states": KlearDecoderLayer,
        "attentions": KlearAttention,
    }

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, KlearExperts):
            init.normal_(module.gate_up_proj, mean=0.0, std=std)
            init.normal_(module.down_proj, mean=0.0, std=std)
        elif isinstance(module, KlearRouter):
            init.normal_(module.weight, mean=0.0, std=std)
            init.zeros_(module.e_score_correction_bias)

    def routers(self) -> list[KlearRouter]:
        """The routers of the sparse layers, in layer order."""
        return [m for m in self.modules() if isinstance(m, KlearRouter)]


class KlearModel(KlearPreTrainedModel):
    def __init__(self, config: KlearConfig):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([KlearDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = KlearRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = KlearRotaryEmbedding(config=config)
        self.gradient_checkpointing = False
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MoeModelOutputWithPast:
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if position_ids is None:
            past_seen_tokens = past_key_values.get_seq_length() if past_key_values is not None else 0
            position_ids = (torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + past_seen_tokens)[None]

        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            past_key_values=past_key_values,
            position_ids=position_ids,
        )
        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids=position_ids)
        for decoder_layer in self.layers[: self.config.num_hidden_layers]:
            hidden_states = decoder_layer(
                hidden_states,
                attention_mask=causal_mask,
                position_ids=position_ids,
                past_key_values=past_key_values,
                use_cache=use_cache,
                position_embeddings=position_embeddings,
                **kwargs,
            )
        return MoeModelOutputWithPast(last_hidden_state=self.norm(hidden_states), past_key_values=past_key_values)


class KlearMoeForCausalLM(KlearPreTrainedModel, GenerationMixin):
    _tp_plan = {"lm_head": "colwise_gather_output"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}

    def __init__(self, config: KlearConfig):
        super().__init__(config)
        self.model = KlearModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_router_logits: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MoeCausalLMOutputWithPast:
        output_router_logits = (
            output_router_logits if output_router_logits is not None else self.config.output_router_logits
        )
        outputs: MoeModelOutputWithPast = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_router_logits=output_router_logits,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        slice_indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, slice_indices, :])

        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, self.vocab_size, **kwargs)

        aux_loss = None
        if output_router_logits and outputs.router_logits:
            # The same loss TRL's trainers compute through their fused LM head, so that training and
            # this forward agree (see `load_balancing_loss_func`'s note in the module docstring).
            aux_loss = load_balancing_loss_func(
                outputs.router_logits, self.config.num_experts, self.config.num_experts_per_tok, attention_mask
            )
            if labels is not None:
                loss = loss + self.config.router_aux_loss_coef * aux_loss.to(loss.device)

        return MoeCausalLMOutputWithPast(
            loss=loss,
            aux_loss=aux_loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            router_logits=outputs.router_logits,
        )
