"""align.plan: figures checked by hand (pure arithmetic) and the CLI on the real recipes."""

import json

import pytest

from align.plan.__main__ import main as plan_cli
from align.plan.memory import Lora, ModelShape, Parallel, Training, parameter_counts, plan

KLEAR = ModelShape()  # the released Klear-46B-A2.5B sizes


def test_klear_parameter_count_by_hand():
    """embedding and LM head 151,936 x 2048 each = 311,164,928; per layer: attention
    2048 x 2048 x 2 (q, o) + 2048 x 256 x 2 (k, v) + 64 x 2 (q/k norms) = 9,437,312, routed experts
    256 x 3 x 2048 x 896 = 1,409,286,144, shared expert 3 x 2048 x 896 = 5,505,024, router
    256 x 2048 = 524,288, blend 2 x 2048 + 2 = 4,098, norms 2 x 2048; final norm 2048."""
    counts = parameter_counts(KLEAR)
    per_layer = 9_437_312 + 1_409_286_144 + 5_505_024 + 524_288 + 4_098 + 4_096
    assert counts["total"] == 2 * 311_164_928 + 32 * per_layer + 2048
    assert counts["total"] == 46_214_682_688  # "46B"
    assert counts["routed_experts"] == 32 * 1_409_286_144


@pytest.mark.parametrize("layers, experts", [(32, 256), (2, 16)])
def test_parameter_count_matches_the_model_itself(layers, experts):
    """The planner's count equals the parameters of KlearMoeForCausalLM built (on the meta device)."""
    import torch

    from align.models.klear import KlearConfig, KlearMoeForCausalLM

    config = KlearConfig(num_hidden_layers=layers, num_experts=experts)
    with torch.device("meta"):
        model = KlearMoeForCausalLM(config)
    counts = parameter_counts(ModelShape.from_config(config.to_dict()))
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["routed_experts"] == sum(p.numel() for n, p in model.named_parameters() if ".routed.experts." in n)


@pytest.mark.parametrize("gpus", [8, 16, 64])
def test_full_fine_tuning_under_plain_zero3_is_16_bytes_per_parameter(gpus):
    """bf16 parameter 2 + bf16 gradient 2 + fp32 master 4 + Adam moments 8 = 16 bytes, over the GPUs."""
    total = parameter_counts(KLEAR)["total"]
    result = plan(KLEAR, Parallel(world=gpus, zero_stage=3), Training(stage="sft"))
    assert result.per_gpu["weights"] == pytest.approx(2 * total / gpus)
    assert result.per_gpu["gradients"] == pytest.approx(2 * total / gpus)
    assert result.per_gpu["optimizer"] == pytest.approx(12 * total / gpus)
    assert result.per_gpu["model_states"] * gpus / total == pytest.approx(16.0)


def test_fp32_gradient_accumulation_makes_it_18_bytes():
    total = parameter_counts(KLEAR)["total"]
    result = plan(KLEAR, Parallel(world=16, grad_accum_dtype="fp32"), Training(stage="sft"))
    assert result.per_gpu["model_states"] * 16 / total == pytest.approx(18.0)


def test_expert_parallel_keeps_model_states_and_shrinks_the_gathered_experts():
    """AutoEP's experts are ZeRO-partitioned over the expert-data-parallel group: 1/world either way.
    What a rank gathers is its own experts. Without EP the largest module gathered is a layer's
    256 experts (1,409,286,144 elements); with EP 8, 32 of them are smaller than the embedding
    (311,164,928), which becomes the largest. Gathered weights and their full gradient, 2 bytes each."""
    plain = plan(KLEAR, Parallel(world=16, ep_size=1), Training(stage="sft"))
    ep8 = plan(KLEAR, Parallel(world=16, ep_size=8), Training(stage="sft"))
    assert ep8.per_gpu["model_states"] == pytest.approx(plain.per_gpu["model_states"])
    assert plain.per_gpu["buffers"] - ep8.per_gpu["buffers"] == 2 * 2 * (1_409_286_144 - 311_164_928)


def test_lora_trains_only_the_adapters():
    """r=16 on q, k, v, o of 32 layers: 32 x 16 x ((2048+2048) + 2 x (2048+256) + (2048+2048)) = 6,553,600
    trainable; the frozen base is still ZeRO-3 partitioned at 2 bytes a parameter."""
    gpus, adapters = 8, 32 * 16 * (4096 + 2 * 2304 + 4096)
    total = parameter_counts(KLEAR)["total"]
    result = plan(KLEAR, Parallel(world=gpus), Training(stage="dpo", lora=Lora(r=16), reference="adapters_off"))
    assert result.trainable_parameters == adapters == 6_553_600
    assert result.per_gpu["weights"] == pytest.approx(2 * (total + adapters) / gpus)
    assert result.per_gpu["gradients"] == pytest.approx(2 * adapters / gpus)
    assert result.per_gpu["optimizer"] == pytest.approx(12 * adapters / gpus)
    assert result.per_gpu["reference"] == 0


def test_dpo_reference_copy_costs_a_second_set_of_bf16_weights():
    copy = plan(KLEAR, Parallel(world=16, ep_size=8), Training(stage="dpo", reference="copy"))
    precomputed = plan(KLEAR, Parallel(world=16, ep_size=8), Training(stage="dpo", reference="precomputed"))
    assert copy.per_gpu["reference"] == pytest.approx(copy.per_gpu["weights"])
    assert precomputed.per_gpu["reference"] == 0


def test_optimizer_offload_moves_state_to_cpu():
    result = plan(KLEAR, Parallel(world=8, nodes=1, offload_optimizer=True), Training(stage="sft"))
    total = parameter_counts(KLEAR)["total"]
    assert result.per_gpu["optimizer"] == result.per_gpu["gradients"] == 0
    assert result.cpu_per_node >= 14 * total  # 12 bytes of optimizer + 2 of gradients per parameter, whole node


def test_bad_layouts_are_refused():
    with pytest.raises(ValueError, match="does not divide 16 GPUs"):
        plan(KLEAR, Parallel(world=16, ep_size=3), Training())
    experts_lora = Lora(target_parameters=("mlp.routed.experts.gate_up_proj",))
    with pytest.raises(ValueError, match="needs no expert parallelism"):
        plan(KLEAR, Parallel(world=16, ep_size=8), Training(lora=experts_lora))
    assert plan(KLEAR, Parallel(world=16), Training(lora=experts_lora)).trainable_parameters == (
        16 * 32 * 256 * (2048 + 2 * 896) + 32 * 16 * 12_800  # r x (in + out) for every expert, plus attention
    )
    with pytest.raises(ValueError, match="optim 'shampoo'"):
        plan(KLEAR, Parallel(world=16), Training(optim="shampoo"))


def test_cli_json_on_the_real_dpo_recipe(capsys):
    report = plan_cli(["--config", "configs/dpo/klear-46b-a2.5b.yaml", "--gpus", "16", "--gpu-memory-gib", "80",
                       "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(report))
    assert printed["deepspeed_config"] == "configs/deepspeed/zero3-ep8.json"  # via the recipe's launcher
    assert printed["expert_parallel_size"] == 8 and printed["stage"] == "dpo"
    assert printed["reference"] == "precomputed"
    assert set(printed["per_gpu_gib"]) >= {"weights", "gradients", "optimizer", "activations", "total"}
    assert isinstance(printed["fits"], bool)
    g = printed["per_gpu_gib"]
    assert g["total"] == pytest.approx(sum(g[k] for k in ("weights", "gradients", "optimizer", "activations",
                                                          "reference", "buffers", "runtime")), abs=0.01)


def test_cli_flags_override_the_recipe(capsys):
    lora = plan_cli(["--config", "configs/sft/klear-46b-a2.5b.yaml", "--gpus", "8", "--gpu-memory-gib", "80",
                     "--use_peft", "true", "--lora_r", "8", "--lora_target_modules", "q_proj", "v_proj", "--json"])
    assert lora["trainable_parameters"] == 32 * 8 * ((2048 + 2048) + (2048 + 256))
    full = plan_cli(["--config", "configs/sft/klear-46b-a2.5b.yaml", "--gpus", "8", "--gpu-memory-gib", "80",
                     "--json"])
    assert not full["fits"] and full["would_fit_with"]  # 46B full SFT on 8 x 80 GiB needs a change
    assert any(option["change"] == "16 GPUs" for option in full["would_fit_with"])
    with pytest.raises(SystemExit, match="unknown recipe field"):
        plan_cli(["--config", "configs/sft/klear-46b-a2.5b.yaml", "--gpus", "8", "--lora_rank", "8"])
