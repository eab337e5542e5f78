"""Per-GPU memory of a Klear SFT/DPO run under DeepSpeed ZeRO + AutoEP: pure functions, no torch.

Everything here is arithmetic on a model shape (`ModelShape`), a parallel layout (`Parallel`) and
a training setup (`Training`); `plan()` returns the per-GPU breakdown in bytes. What the numbers
rest on (read from DeepSpeed 0.19.8, transformers 5.18 and TRL 1.16; see docs/scaling.md):

- ZeRO-3 partitions every parameter over its partition group. AutoEP gives each expert-parallel
  rank `num_experts / ep` of the routed experts and tags those parameters `autoep_expert`; the
  engine (`_partition_autoep_zero3_experts`) partitions them over the *expert-data-parallel*
  group (the `world / ep` ranks holding the same experts), everything else over all `world`
  ranks. Either way a rank keeps `1 / world` of each: EP does not change the model states per
  GPU, it changes what a rank gathers (its own experts only) and what crosses the network.
- bf16 under DeepSpeed: a bf16 parameter partition (2 bytes), a bf16 gradient partition
  (`grad_accum_dtype` defaults to the model dtype: 2), an fp32 master copy (4) and Adam's two fp32
  moments (8): 16 bytes per trainable parameter over the partition group. At each optimizer step
  DeepSpeed converts one sub-group's gradients to fp32 (`sub_group_size`, 1e9 elements by
  default): a transient 4 bytes per parameter of that sub-group.
- Activations: the tensors autograd keeps for one micro-batch, counted per token per layer for
  Klear's decoder layer with SDPA attention (no sequence-squared term); with gradient
  checkpointing only each layer's input is kept, plus one layer's working set during its
  recomputation. The LM head never materialises the full logits: TRL's fused head (SFT) and
  align's packed DPO head work in tiles of tokens.
- Sequence parallelism (DeepSpeed Ulysses, `sp_size` ranks per group; align.training.sequence_parallel):
  each rank of a group keeps `1 / sp_size` of every sequence's tokens, so every per-token activation
  divides by the group size; attention exchanges q, k, v (k/v heads replicated up to the group size when
  it exceeds them) and its output by all-to-all, which allocates a send and a receive buffer for each and
  leaves the gathered q, k, v saved for SDPA's backward (`sequence_parallel_bytes`). Model states do not
  change: ZeRO shards them over all ranks. Expert parallelism cannot be combined with it (DeepSpeed 0.19.8).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

GIB = 2**30
DTYPE_BYTES = {"bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "float32": 4, "fp32": 4}
# Optimizer states kept per trainable parameter (fp32 each under DeepSpeed); `optim` names of
# transformers' TrainingArguments.
OPTIMIZER_STATES = {"adamw": 2, "adam": 2, "lion": 1, "sgd": 0, "adafactor": 0, "rmsprop": 1, "adagrad": 1}
ALIGN_DPO_HEAD_CHUNK = 1024  # align.dpo.packing.packed_pair_forward(lm_head_chunk=)


def trl_lm_head_tile(tokens: int, vocab: int) -> int:
    """Elements of the largest logits tile TRL's chunked LM head materialises (its tile sizes read from
    TRL through align.training.compat)."""
    from align.training.compat import trl_lm_head_tiles

    token_chunk, vocab_chunk = trl_lm_head_tiles()
    return min(tokens, token_chunk) * min(vocab, vocab_chunk)


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a Klear (or any Qwen3-MoE-like) decoder that memory depends on."""

    vocab_size: int = 151936
    hidden_size: int = 2048
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 4
    head_dim: int = 64
    intermediate_size: int = 8064
    moe_intermediate_size: int = 896
    num_experts: int = 256
    num_experts_per_tok: int = 8
    n_shared_experts: int = 1
    sparse_layers: int = 32
    tie_word_embeddings: bool = False

    @classmethod
    def from_config(cls, config: dict) -> ModelShape:
        """From a config.json dict (a KlearConfig's `to_dict()` or the released file)."""
        layers = config["num_hidden_layers"]
        heads = config["num_attention_heads"]
        head_dim = config.get("head_dim") or config["hidden_size"] // heads
        mlp_only = set(config.get("mlp_only_layers") or [])
        step = config.get("decoder_sparse_step", 1) or 1
        experts = config.get("num_experts", 0) or 0
        sparse = sum(1 for i in range(layers) if i not in mlp_only and experts > 0 and (i + 1) % step == 0)
        return cls(
            vocab_size=config["vocab_size"],
            hidden_size=config["hidden_size"],
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=config.get("num_key_value_heads") or heads,
            head_dim=head_dim,
            intermediate_size=config.get("intermediate_size", 0),
            moe_intermediate_size=config.get("moe_intermediate_size", 0),
            num_experts=experts,
            num_experts_per_tok=config.get("num_experts_per_tok", 0),
            n_shared_experts=config.get("n_shared_experts", 0) or 0,
            sparse_layers=sparse,
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        )

    @property
    def q_width(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.num_key_value_heads * self.head_dim

    @property
    def shared_width(self) -> int:
        return self.moe_intermediate_size * self.n_shared_experts

    @property
    def dense_layers(self) -> int:
        return self.num_hidden_layers - self.sparse_layers


def parameter_counts(shape: ModelShape) -> dict[str, int]:
    """Parameters by part (whole model). `routed_experts` is what expert parallelism splits."""
    h = shape.hidden_size
    attention = h * shape.q_width * 2 + h * shape.kv_width * 2 + 2 * shape.head_dim  # q, o, k, v, q/k norms
    swiglu = 3 * h * shape.moe_intermediate_size
    counts = {
        "embedding": shape.vocab_size * h,
        "lm_head": 0 if shape.tie_word_embeddings else shape.vocab_size * h,
        "attention": shape.num_hidden_layers * attention,
        "norms": shape.num_hidden_layers * 2 * h + h,
        "router": shape.sparse_layers * shape.num_experts * h,  # gate.weight (expert_bias is a buffer)
        "shared_experts": shape.sparse_layers * 3 * h * shape.shared_width,
        "coefficient": shape.sparse_layers * (2 * h + 2) if shape.n_shared_experts else 0,
        "routed_experts": shape.sparse_layers * shape.num_experts * swiglu,
        "dense_mlp": shape.dense_layers * 3 * h * shape.intermediate_size,
    }
    counts["total"] = sum(counts.values())
    return counts


def active_parameters(shape: ModelShape) -> int:
    """Parameters one token goes through (the matrix work per token is about 2x this, forward)."""
    counts = parameter_counts(shape)
    per_routed_expert = 3 * shape.hidden_size * shape.moe_intermediate_size
    routed_active = shape.sparse_layers * shape.num_experts_per_tok * per_routed_expert
    return counts["total"] - counts["embedding"] - counts["routed_experts"] + routed_active


@dataclass(frozen=True)
class Lora:
    """PEFT LoRA: `target_modules` are module names (`q_proj`, ..., `gate_proj` means the shared
    expert's), `target_parameters` fused expert tensors (`mlp.routed.experts.gate_up_proj`)."""

    r: int = 16
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    target_parameters: tuple[str, ...] = ()


def lora_parameters(shape: ModelShape, lora: Lora) -> int:
    """Adapter parameters: r x (in + out) per targeted matrix (per expert for fused expert tensors)."""
    h, i_shared, i_moe = shape.hidden_size, shape.shared_width, shape.moe_intermediate_size
    per_layer_modules = {
        "q_proj": (h, shape.q_width, shape.num_hidden_layers),
        "k_proj": (h, shape.kv_width, shape.num_hidden_layers),
        "v_proj": (h, shape.kv_width, shape.num_hidden_layers),
        "o_proj": (shape.q_width, h, shape.num_hidden_layers),
        "gate_proj": (h, i_shared, shape.sparse_layers),
        "up_proj": (h, i_shared, shape.sparse_layers),
        "down_proj": (i_shared, h, shape.sparse_layers),
        "coefficient": (h, 2, shape.sparse_layers),
    }
    total = 0
    for name in lora.target_modules:
        if name not in per_layer_modules:
            raise ValueError(f"LoRA target module {name!r} is not one the planner knows: {sorted(per_layer_modules)}")
        fan_in, fan_out, layers = per_layer_modules[name]
        total += layers * lora.r * (fan_in + fan_out)
    per_expert = {"gate_up_proj": (h, 2 * i_moe), "down_proj": (i_moe, h)}
    for name in lora.target_parameters:
        leaf = name.rsplit(".", 1)[-1]
        if leaf not in per_expert:
            raise ValueError(f"LoRA target parameter {name!r}: expected ...experts.gate_up_proj or "
                             "...experts.down_proj")
        fan_in, fan_out = per_expert[leaf]
        total += shape.sparse_layers * shape.num_experts * lora.r * (fan_in + fan_out)
    return total


@dataclass(frozen=True)
class Parallel:
    """The launch: `world` GPUs (processes) over `nodes`, ZeRO stage, AutoEP size, offloads, buckets."""

    world: int
    nodes: int = 1
    zero_stage: int = 3
    ep_size: int = 1
    deepspeed: bool = True
    offload_optimizer: bool = False
    offload_param: bool = False
    grad_accum_dtype: str | None = None  # DeepSpeed data_types.grad_accum_dtype; None: the model dtype
    sub_group_size: int = 10**9
    reduce_bucket_size: int | None = None  # None: "auto", hidden^2 (transformers' DeepSpeed integration)
    prefetch_bucket_size: int | None = None  # None: "auto", 0.9 x hidden^2
    sp_size: int = 1  # ranks per sequence-parallel (Ulysses) group; accelerate's parallelism_config_sp_size

    @property
    def data_parallel_size(self) -> int:
        return self.world // self.sp_size

    def check(self, shape: ModelShape) -> None:
        if self.world < 1 or self.nodes < 1 or self.world % self.nodes:
            raise ValueError(f"{self.world} GPUs cannot be spread evenly over {self.nodes} nodes")
        if self.sp_size > 1:
            sequence_parallel_fault = sequence_parallel_problem(shape, self.world, self.sp_size, self.ep_size)
            if sequence_parallel_fault:
                raise ValueError(sequence_parallel_fault)
        if self.ep_size > 1:
            if self.world % self.ep_size:
                raise ValueError(f"expert-parallel size {self.ep_size} does not divide {self.world} GPUs")
            if shape.num_experts % self.ep_size:
                raise ValueError(f"expert-parallel size {self.ep_size} does not divide {shape.num_experts} experts")


@dataclass(frozen=True)
class Training:
    """What one process computes per micro-batch, and what it trains."""

    stage: str = "sft"  # "sft", "dpo" or "rl"
    dtype: str = "bfloat16"
    micro_batch: int = 1
    max_length: int = 4096
    max_prompt_length: int | None = None
    gradient_checkpointing: bool = True
    packing: bool = True  # SFT: bins filled to max_length; DPO: align's padding-free packed pairs
    reference: str = "copy"  # DPO: "copy", "precomputed" or "adapters_off" (LoRA); RL: "none" (beta 0) or "copy"
    optim: str = "adamw_torch"
    lora: Lora | None = None
    freeze_router: bool = False
    gradient_accumulation_steps: int = 1
    # RL with vLLM colocated (`vllm_mode: colocate`): the bytes vLLM takes on each GPU
    # (vllm_gpu_memory_utilization x the GPU's memory: weights, KV cache, its runtime).
    vllm_colocate_bytes: float = 0.0

    @property
    def dtype_bytes(self) -> int:
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(f"dtype {self.dtype!r}: expected one of {sorted(DTYPE_BYTES)}")
        return DTYPE_BYTES[self.dtype]

    def optimizer_states(self) -> int:
        for prefix, states in OPTIMIZER_STATES.items():
            if self.optim.startswith(prefix):
                return states
        raise ValueError(f"optim {self.optim!r}: the planner knows {sorted(OPTIMIZER_STATES)} (and their variants)")

    def tokens_per_micro_batch(self) -> int:
        """Tokens one forward pass sees, at most. SFT: micro-batch x max_length (packed bins, or
        unpacked rows of up to max_length). DPO: both sequences of each pair, each up to max_length
        (a shared prompt is computed once, but with a short prompt the pair still nears 2 x max_length)."""
        per_row = 2 * self.max_length if self.stage == "dpo" else self.max_length  # RL: prompt + completion
        return self.micro_batch * per_row

    def scored_tokens_per_micro_batch(self) -> int:
        """Tokens the LM head scores, at most: every token for SFT; for DPO the completions, which
        with a short prompt are nearly all of both sequences (`max_prompt_length` bounds the prompt
        from above, so it cannot shorten them)."""
        return self.tokens_per_micro_batch()


def sequence_parallel_problem(shape: ModelShape, world: int, sp_size: int, ep_size: int = 1) -> str | None:
    """Why a sequence-parallel group of `sp_size` cannot run, or None (the trainer refuses the same)."""
    if world % sp_size:
        return f"sequence-parallel size {sp_size} does not divide {world} GPUs"
    if shape.num_attention_heads % sp_size:
        return f"sequence-parallel size {sp_size} does not divide {shape.num_attention_heads} attention heads"
    kv = shape.num_key_value_heads
    if kv % sp_size and sp_size % kv:
        return f"sequence-parallel size {sp_size} and {kv} key/value heads: neither divides the other"
    if ep_size > 1:
        return (f"sequence-parallel size {sp_size} with expert-parallel size {ep_size}: DeepSpeed 0.19.8 refuses "
                "AutoEP with sequence parallelism (runtime/engine.py)")
    return None


def sequence_parallel_bytes(shape: ModelShape, tokens_per_rank: int, sp_size: int, dtype_bytes: int) -> dict:
    """Ulysses' extra memory per rank, for `tokens_per_rank` local tokens (0 without sequence parallelism):

    - `all_to_all`: the transient buffers of one attention layer: send and receive for q, k, v on the way
      in and for the attention output on the way out, b x tokens x (2 (Q + 2 KV') + 2 Q), where KV' is the
      k/v width after replicating heads up to the group size;
    - `saved_per_layer`: the gathered q, k, v SDPA keeps for its backward (the same size as the local ones,
      `heads / sp` heads of the whole sequence), b x tokens x (Q + 2 KV').
    """
    if sp_size <= 1:
        return {"all_to_all": 0, "saved_per_layer": 0}
    kv_width = shape.kv_width * max(1, sp_size // shape.num_key_value_heads)
    qkv = shape.q_width + 2 * kv_width
    return {"all_to_all": dtype_bytes * tokens_per_rank * (2 * qkv + 2 * shape.q_width),
            "saved_per_layer": dtype_bytes * tokens_per_rank * qkv}


def layer_activation_bytes_per_token(shape: ModelShape, dtype_bytes: int) -> int:
    """Bytes autograd keeps per token for one Klear decoder layer (sparse), without checkpointing.

    Counted tensor by tensor (b = dtype bytes; RMSNorm keeps its fp32 input):
    attention: input RMSNorm (4 + b)H; q, k, v outputs b(Q + 2KV); q/k RMSNorm (4 + b)(Q + KV);
    RoPE (q, k, both halves) 2b(Q + KV); SDPA output and o_proj's input 2bQ.
    MoE: post-attention RMSNorm (4 + b)H; router in fp32 4H + 8E; per routed copy (top-k of them)
    b(3H + 4I): permuted input, gate/up outputs, activation, product, down output, weighted output;
    shared expert b(4I_s + H); the blend 2bH.
    """
    b, h = dtype_bytes, shape.hidden_size
    q, kv = shape.q_width, shape.kv_width
    attention = (4 + b) * h + b * (q + 2 * kv) + (4 + b) * (q + kv) + 2 * b * (q + kv) + 2 * b * q
    if shape.num_experts:
        routed = shape.num_experts_per_tok * b * (3 * h + 4 * shape.moe_intermediate_size)
        moe = (4 + b) * h + 4 * h + 8 * shape.num_experts + routed + b * (4 * shape.shared_width + h) + 2 * b * h
    else:
        moe = (4 + b) * h + b * (4 * shape.intermediate_size + h)
    return attention + moe


def activation_bytes(shape: ModelShape, training: Training, sp_size: int = 1) -> dict[str, float]:
    """Activations of one micro-batch on one rank: the layers' saved tensors and the LM head's working set
    (under sequence parallelism, for the rank's `1 / sp_size` of the tokens)."""
    b = training.dtype_bytes
    tokens = -(-training.tokens_per_micro_batch() // sp_size)
    ulysses = sequence_parallel_bytes(shape, tokens, sp_size, b)
    per_layer = layer_activation_bytes_per_token(shape, b) * tokens + ulysses["saved_per_layer"]
    if training.gradient_checkpointing:
        # each layer's input kept, one layer's tensors alive while it is recomputed and back-propagated
        layers = shape.num_hidden_layers * tokens * shape.hidden_size * b + per_layer
    else:
        layers = shape.num_hidden_layers * per_layer
    scored = -(-training.scored_tokens_per_micro_batch() // sp_size)
    v, h = shape.vocab_size, shape.hidden_size
    if training.stage in ("sft", "rl"):
        # TRL's fused head (GRPOTrainer scores the completions through the same one): fp32 grad of the head weight and of the hidden states, tiles of logits
        tile = trl_lm_head_tile(scored, v)
        head = 4 * v * h + 4 * scored * h + tile * (b + 4 + 4)
    elif training.packing:
        # align's packed DPO head: logits of one chunk of completion tokens at a time (recomputed in
        # backward): bf16 logits, fp32 log-softmax, its gradient
        head = min(scored, ALIGN_DPO_HEAD_CHUNK) * v * (b + 4 + 4) + 4 * scored * h
    else:
        # TRL's own DPO path: its fused head over every position
        tile = trl_lm_head_tile(scored, v)
        head = 4 * v * h + 4 * scored * h + tile * (b + 4 + 4)
    return {"layers": layers, "lm_head": head, "all_to_all": ulysses["all_to_all"],
            "total": layers + head + ulysses["all_to_all"]}


@dataclass
class Plan:
    """The per-GPU breakdown (bytes) and what went into it."""

    per_gpu: dict[str, float]
    parameters: dict[str, int]
    trainable_parameters: int
    cpu_per_node: float
    notes: list[str] = field(default_factory=list)

    def gib(self) -> dict[str, float]:
        return {name: round(value / GIB, 3) for name, value in self.per_gpu.items()}


def _per_rank(dense: float, experts: float, parallel: Parallel, sharded: bool) -> float:
    """Elements a rank keeps of `dense` + `experts` elements: 1/world of each when sharded; otherwise
    all the dense part and its expert-parallel share of the experts."""
    if sharded:
        return (dense + experts) / parallel.world
    return dense + experts / parallel.ep_size


def plan(shape: ModelShape, parallel: Parallel, training: Training, runtime_bytes: float = 0.0) -> Plan:
    """Per-GPU memory of one training process. `runtime_bytes`: what the runtime itself takes
    (CUDA context and library workspaces on a GPU; the interpreter and libraries on CPU)."""
    parallel.check(shape)
    if training.lora is not None and training.lora.target_parameters and parallel.ep_size > 1:
        raise ValueError("LoRA on the fused routed experts (lora_target_parameters) needs no expert parallelism: "
                         "AutoEP replaces that module")
    if training.stage not in ("sft", "dpo", "rl"):
        raise ValueError(f"stage must be 'sft', 'dpo' or 'rl', got {training.stage!r}")
    counts = parameter_counts(shape)
    b = training.dtype_bytes
    stage = parallel.zero_stage if parallel.deepspeed else 0
    experts = counts["routed_experts"]
    dense = counts["total"] - experts

    if training.lora is not None:
        trainable_dense, trainable_experts = lora_parameters(shape, training.lora), 0
    else:
        trainable_dense = dense - (counts["router"] if training.freeze_router else 0)
        trainable_experts = experts
    trainable = trainable_dense + trainable_experts

    weights = b * (
        _per_rank(dense, experts, parallel, stage >= 3)
        + (_per_rank(trainable_dense, 0, parallel, stage >= 3) if training.lora else 0)
    )
    grad_bytes = DTYPE_BYTES[parallel.grad_accum_dtype] if parallel.grad_accum_dtype else b
    gradients = grad_bytes * _per_rank(trainable_dense, trainable_experts, parallel, stage >= 2)
    mixed = parallel.deepspeed and b < 4
    state_bytes = 4 if (parallel.deepspeed or b == 4) else b
    optimizer_per_param = (4 if mixed else 0) + training.optimizer_states() * state_bytes
    optimizer_elements = _per_rank(trainable_dense, trainable_experts, parallel, stage >= 1)
    optimizer = optimizer_per_param * optimizer_elements

    # at the optimizer step: one sub-group's gradients converted to fp32 (when they are not already)
    partition = optimizer_elements
    step_fp32_grads = 4 * min(partition, parallel.sub_group_size) if (mixed and grad_bytes != 4) else 0

    cpu = 0.0
    notes = []
    if parallel.offload_optimizer:
        cpu += (optimizer + gradients + step_fp32_grads) * (parallel.world // parallel.nodes)
        notes.append("optimizer offload: fp32 master, optimizer states and gradient partitions live in CPU memory")
        optimizer = gradients = step_fp32_grads = 0
    if parallel.offload_param:
        cpu += weights * (parallel.world // parallel.nodes)
        notes.append("parameter offload: parameter partitions live in CPU memory, gathered onto the GPU per module")
        weights = 0

    # ZeRO-3 working set: the largest module gathered, the next one prefetched, and its full-size
    # gradient before the reduce-scatter; plus the gradient bucket.
    h = shape.hidden_size
    local_experts = shape.num_experts // parallel.ep_size * 3 * h * shape.moe_intermediate_size
    largest = max(counts["embedding"], counts["lm_head"], local_experts, 2 * h * shape.q_width)
    prefetch = parallel.prefetch_bucket_size if parallel.prefetch_bucket_size is not None else int(0.9 * h * h)
    reduce_bucket = parallel.reduce_bucket_size if parallel.reduce_bucket_size is not None else h * h
    gathered = b * (largest + prefetch) if stage >= 3 else 0
    full_gradient = grad_bytes * (largest if training.lora is None else 0)
    buffers = gathered + full_gradient + grad_bytes * reduce_bucket + step_fp32_grads

    reference = 0.0
    if training.stage == "dpo":
        if training.reference == "copy":
            reference = b * _per_rank(dense, experts, parallel, stage >= 3)
        elif training.reference == "adapters_off" and training.lora is None:
            raise ValueError("reference 'adapters_off' needs LoRA (use_peft)")
        elif training.reference not in ("copy", "precomputed", "adapters_off"):
            raise ValueError(f"DPO reference must be copy, precomputed or adapters_off, got {training.reference!r}")
    elif training.stage == "rl":
        if training.reference not in ("none", "copy"):
            raise ValueError(f"RL reference must be none (beta 0) or copy, got {training.reference!r}")
        if training.reference == "copy":  # TRL's frozen reference for the KL term, sharded like the policy
            reference = b * _per_rank(dense, experts, parallel, stage >= 3)

    act = activation_bytes(shape, training, parallel.sp_size)
    per_gpu = {
        "weights": weights,
        "gradients": gradients,
        "optimizer": optimizer,
        "activations": act["total"],
        "reference": reference,
        "vllm_colocate": training.vllm_colocate_bytes,
        "buffers": buffers,
        "runtime": runtime_bytes,
    }
    per_gpu["total"] = sum(per_gpu.values())
    per_gpu["model_states"] = weights + gradients + optimizer
    per_gpu["activations_layers"] = act["layers"]
    per_gpu["activations_lm_head"] = act["lm_head"]
    per_gpu["activations_all_to_all"] = act["all_to_all"]
    return Plan(per_gpu=per_gpu, parameters=counts, trainable_parameters=trainable, cpu_per_node=cpu, notes=notes)


def training_flops_per_token(shape: ModelShape, training: Training) -> float:
    """Matrix FLOPs per trained token: 6 x active parameters (forward 2, backward 4) plus attention
    (causal, 2 x 2 x seq x Q per layer forward, averaged over positions), an extra forward with
    gradient checkpointing, and the reference model's forward for DPO with a reference copy."""
    n = active_parameters(shape)
    seq = training.max_length
    attention_forward = 2 * 2 * seq * shape.q_width * shape.num_hidden_layers / 2
    forward = 2 * n + attention_forward
    flops = 3 * forward
    if training.gradient_checkpointing:
        flops += forward - 2 * shape.vocab_size * shape.hidden_size  # the LM head is not recomputed
    if training.stage == "dpo" and training.reference == "copy":
        flops += forward
    return flops


def step_seconds(shape: ModelShape, parallel: Parallel, training: Training, mfu: float, peak_tflops: float) -> dict:
    """Seconds per optimizer step at a given MFU (model FLOPs over the GPUs' peak)."""
    # a sequence-parallel group of sp ranks trains one micro-batch together
    tokens = training.tokens_per_micro_batch() * training.gradient_accumulation_steps * parallel.data_parallel_size
    flops = training_flops_per_token(shape, training) * tokens
    seconds = flops / (parallel.world * peak_tflops * 1e12 * mfu)
    return {"tokens_per_step": tokens, "flops_per_token": flops / tokens, "seconds": seconds, "mfu": mfu,
            "peak_tflops_per_gpu": peak_tflops, "tokens_per_s": tokens / seconds}


def fitting_changes(shape: ModelShape, parallel: Parallel, training: Training, budget: float,
                    runtime_bytes: float) -> list[dict]:
    """Each single change that would bring the total under `budget` bytes, with its total."""
    candidates = []
    for world in (parallel.world * 2, parallel.world * 4, parallel.world * 8):
        nodes = max(parallel.nodes, world // max(parallel.world // parallel.nodes, 1))
        candidates.append((f"{world} GPUs", replace(parallel, world=world, nodes=nodes), training))
    if not parallel.offload_optimizer and parallel.deepspeed:
        candidates.append(("optimizer offload to CPU", replace(parallel, offload_optimizer=True), training))
    if training.stage == "dpo" and training.reference == "copy":
        candidates.append(("precompute_ref_log_probs: true", parallel, replace(training, reference="precomputed")))
    if training.lora is None:
        reference = "adapters_off" if training.stage == "dpo" else training.reference
        lora = replace(training, lora=Lora(), reference=reference)
        candidates.append(("LoRA r=16 on attention (use_peft)", parallel, lora))
    if not training.gradient_checkpointing:
        candidates.append(("gradient_checkpointing: true", parallel, replace(training, gradient_checkpointing=True)))
    if training.micro_batch > 1:
        candidates.append(("per_device_train_batch_size: 1", parallel, replace(training, micro_batch=1)))
    if training.max_length > 1024:
        half = training.max_length // 2
        candidates.append((f"max_length: {half}", parallel, replace(training, max_length=half)))
    for ep in (parallel.ep_size * 2, parallel.ep_size * 4):
        if parallel.world % ep == 0 and shape.num_experts % ep == 0 and ep <= parallel.world:
            candidates.append((f"autoep_size: {ep}", replace(parallel, ep_size=ep), training))
    fitting = []
    for label, p, t in candidates:
        total = plan(shape, p, t, runtime_bytes).per_gpu["total"]
        if total <= budget:
            fitting.append({"change": label, "total_gib": round(total / GIB, 2)})
    return fitting


def smallest_sequence_parallel_size(shape: ModelShape, parallel: Parallel, training: Training, budget: float,
                                    runtime_bytes: float = 0.0) -> dict:
    """The smallest Ulysses group size (dividing the GPUs and the heads, without expert parallelism) whose
    per-GPU total fits `budget` bytes: `{"sp_size", "total_gib"}`, `sp_size` None when none does."""
    tried = []
    for sp in range(1, parallel.world + 1):
        if sequence_parallel_problem(shape, parallel.world, sp) if sp > 1 else False:
            continue
        total = plan(shape, replace(parallel, sp_size=sp, ep_size=1), training, runtime_bytes).per_gpu["total"]
        tried.append({"sp_size": sp, "total_gib": round(total / GIB, 2)})
        if total <= budget:
            return {**tried[-1], "tried": tried}
    return {"sp_size": None, "total_gib": None, "tried": tried}
