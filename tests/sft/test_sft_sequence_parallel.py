"""Sequence-parallel SFT (DeepSpeed Ulysses, 2 CPU processes, one group of 2) against one process.

Float32, the same data, seed and global batch (one conversation of ~1,000 tokens per step): the first-step
loss, the gradients (read back from one plain SGD step with lr 1: `grad = w_before - w_after`), the expert
bias after the aux-free update and the expert loads must match one process's. The loss is also computed
by hand from the saved training rows (assistant tokens only), for a conversation whose answer straddles the
boundary between the two ranks' slices. The router aux loss is off here: it is computed per slice (as it is
per micro-batch under data parallelism), so with it the two runs differ by design (docs/long-context.md).
"""

import json
import random
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from datasets import load_from_disk
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import align  # noqa: F401
from align.training.compat import documents_from_position_ids, packed_sdpa
from align.training.moe import ExpertLoadCounter
from align.training.sequence_parallel import check_sequence_parallel_setup
from tests.distributed import REPO_ROOT, env, run_2proc, tail
from tests.expert_load import assert_same_expert_load

SP_LAUNCHER = REPO_ROOT / "configs/accelerate/cpu-2proc-sp.yaml"
WORDS = ("the quick brown fox jumps over the lazy dog experts route every token to a few of many "
         "answers teach the model to follow instructions").split()


def long_conversations(path, rows: int = 4, seed: int = 0):
    """Conversations of about 1,000 tiny-tokenizer tokens: a question of ~150 words, an answer of ~400."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for _ in range(rows):
            question = " ".join(rng.choice(WORDS) for _ in range(150))
            answer = " ".join(rng.choice(WORDS) for _ in range(400))
            f.write(json.dumps({"messages": [{"role": "user", "content": question},
                                             {"role": "assistant", "content": answer}]}) + "\n")
    return path


def recipe(model_dir, data, out) -> list[str]:
    return ["--config", "configs/sft/tiny.yaml", "--model_name_or_path", str(model_dir), "--dataset_name", str(data),
            "--output_dir", str(out), "--max_length", "2048", "--max_steps", "1", "--bf16", "false",
            "--dtype", "float32", "--per_device_train_batch_size", "1", "--optim", "sgd", "--learning_rate", "1.0",
            "--max_grad_norm", "0", "--router_aux_loss_coef", "0", "--report_to", "none", "--save_strategy", "no",
            "--logging_steps", "1", "--seed", "0", "--attn_implementation", "sdpa"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_klear_dir):
    root = tmp_path_factory.mktemp("sp")
    data = long_conversations(root / "long.jsonl")
    one = subprocess.run([sys.executable, "-m", "align.sft", *recipe(tiny_klear_dir, data, root / "one")],
                         cwd=REPO_ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    run_2proc(["-m", "align.sft"], recipe(tiny_klear_dir, data, root / "sp"), log=root / "sp.log", config=SP_LAUNCHER)
    return root, tiny_klear_dir


def summary(out):
    return json.loads((out / "training_summary.json").read_text())


@pytest.mark.slow
def test_first_step_loss_equals_one_process_and_the_hand_computed_assistant_loss(runs):
    root, start = runs
    one, sp = summary(root / "one"), summary(root / "sp")
    assert sp["world_size"] == 2 and one["world_size"] == 1
    assert sp["first_loss"] == pytest.approx(one["first_loss"], rel=1e-5)

    # By hand: the first row the seeded sampler takes is one of the saved rows; its answer crosses the middle.
    rows = load_from_disk(str(root / "sp" / "train_data"))
    model = AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32).eval()
    losses = []
    for row in rows:
        ids, mask = torch.tensor(row["input_ids"]), torch.tensor(row["assistant_masks"]).bool()
        assert 900 < len(ids) < 1300 and mask[len(ids) // 2] and not mask[: len(ids) // 4].any()
        with torch.no_grad():
            logits = model(input_ids=ids[None]).logits[0, :-1]
        target = ids[1:].masked_fill(~mask[1:], -100)
        losses.append(F.cross_entropy(logits, target, ignore_index=-100).item())
    assert min(abs(sp["first_loss"] - x) for x in losses) < 1e-4, (sp["first_loss"], losses)


@pytest.mark.slow
def test_gradients_expert_bias_and_loads_equal_one_process(runs):
    root, start = runs
    before = load_file(str(start / "model.safetensors"))
    after_one = load_file(str(root / "one" / "model.safetensors"))
    after_sp = load_file(str(root / "sp" / "model.safetensors"))  # the SP run's saved model loads below too
    names = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
             "model.layers.0.self_attn.k_norm.weight", "model.layers.1.mlp.gate.weight",
             "model.layers.1.mlp.experts.3.down_proj.weight", "model.layers.1.mlp.shared_experts.up_proj.weight",
             "lm_head.weight"]
    for name in names:
        grad_one, grad_sp = before[name] - after_one[name], before[name] - after_sp[name]
        assert grad_one.abs().max() > 1e-6, name  # the step moved it
        torch.testing.assert_close(grad_sp, grad_one, rtol=1e-4, atol=1e-6, msg=name)
    # Aux-free update: bias += rate * sign(mean load - load), with tiny.yaml's rate 1e-3. The two runs
    # reach it by separate float paths (sharded vs whole-sequence routing, a ZeRO-3 gather), so compare
    # within half the rate: rounding stays far below it, while a real bug (a token counted twice or
    # missed, so one expert's sign differs) moves that entry by the rate or twice it.
    half_rate = 0.5e-3
    for layer in range(2):
        bias = f"model.layers.{layer}.mlp.expert_bias"
        assert after_sp[bias].abs().sum() > 0, bias
        torch.testing.assert_close(after_sp[bias], after_one[bias], rtol=0, atol=half_rate, msg=bias)
    one, sp = summary(root / "one"), summary(root / "sp")
    assert_same_expert_load(sp, one)
    assert sp["data"] == one["data"]  # the data card's counts
    reloaded = AutoModelForCausalLM.from_pretrained(root / "sp", dtype=torch.float32)
    assert torch.equal(reloaded.lm_head.weight, after_sp["lm_head.weight"])  # a reload of the same tensor: exact


@pytest.mark.slow
def test_expert_parallelism_with_sequence_parallelism_fails_at_startup_in_one_line(tmp_path, tiny_klear_dir):
    launcher = tmp_path / "sp-ep.yaml"
    launcher.write_text(SP_LAUNCHER.read_text().replace("zero3-sp.json", "zero3-ep2.json"))
    data = long_conversations(tmp_path / "long.jsonl", rows=2)
    done = run_2proc(["-m", "align.sft"], recipe(tiny_klear_dir, data, tmp_path / "out"), log=tmp_path / "log",
                     config=launcher, check=False)
    assert done.returncode != 0
    log = (tmp_path / "log").read_text()
    lines = sorted(line for line in log.splitlines() if "parallelism_config_sp_size 2" in line)
    assert [line.split(":")[0] for line in lines] == ["align.sft [rank 0]", "align.sft [rank 1]"], tail(tmp_path / "log")
    assert all("expert_parallel.enabled" in line and "ZeRO stage 3" in line for line in lines)
    # what follows the ranks' lines is accelerate's own report that they failed; no rank's traceback
    assert "ValueError" not in log and "sequence_parallel.py" not in log
    assert not (tmp_path / "out" / "training_summary.json").exists()


# ---- pure pieces ---------------------------------------------------------------------------------------


class Config:
    num_attention_heads, num_key_value_heads = 32, 4


ZERO3 = {"zero_optimization": {"stage": 3}}


@pytest.mark.parametrize(("deepspeed", "needle"), [
    ({**ZERO3, "expert_parallel": {"enabled": True, "autoep_size": 8}}, "ZeRO stage 3"),
    ({"zero_optimization": {"stage": 2}, "expert_parallel": {"enabled": True, "autoep_size": 8}}, "ZeRO stage 2"),
    (None, "needs DeepSpeed"),
])
def test_unsupported_deepspeed_settings_are_named_with_the_group_size(deepspeed, needle):
    with pytest.raises(ValueError) as refused:
        check_sequence_parallel_setup(8, deepspeed, Config, "sdpa", "sdpa")
    message = str(refused.value)
    assert "parallelism_config_sp_size 8" in message and needle in message and "\n" not in message


def test_head_counts_attention_and_group_size_are_checked_together():
    check_sequence_parallel_setup(8, ZERO3, Config, "flash_attention_2", "flash_attention_2")  # 32/8, 8 % 4 == 0
    check_sequence_parallel_setup(1, {**ZERO3, "expert_parallel": {"enabled": True}}, Config, "eager", None)
    with pytest.raises(ValueError, match="num_attention_heads \\(32\\)"):
        check_sequence_parallel_setup(3, ZERO3, Config, "sdpa", "sdpa")
    with pytest.raises(ValueError, match="attn_implementation 'eager'"):
        check_sequence_parallel_setup(2, ZERO3, Config, "eager", "eager")
    with pytest.raises(ValueError, match="sp_attn_implementation 'sdpa'.*'flash_attention_2'"):
        check_sequence_parallel_setup(2, ZERO3, Config, "flash_attention_2", "sdpa")


def test_packed_sdpa_keeps_the_documents_of_a_padding_free_row_apart():
    """Ulysses hands the core attention the whole row with no mask; two documents (positions 0..4, 0..2) must
    each attend within themselves, as two separate causal attentions (the plain reference) do."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(0)
    module = torch.nn.Module()
    module.is_causal, module.num_key_value_groups = True, 1
    q, k, v = (torch.randn(1, 2, 8, 4) for _ in range(3))
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2]])
    assert documents_from_position_ids(position_ids).tolist() == [[1, 1, 1, 1, 1, 2, 2, 2]]
    out, _ = packed_sdpa(sdpa_attention_forward)(module, q, k, v, None, position_ids=position_ids)
    for lo, hi in ((0, 5), (5, 8)):
        ref = F.scaled_dot_product_attention(q[:, :, lo:hi], k[:, :, lo:hi], v[:, :, lo:hi], is_causal=True)
        torch.testing.assert_close(out[:, lo:hi], ref.transpose(1, 2))


def test_expert_load_counter_skips_the_tokens_marked_as_padding(tiny_klear_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_klear_dir, dtype=torch.float32).train()
    counter = ExpertLoadCounter(model)
    ids = torch.arange(10)[None] % model.config.vocab_size
    real = torch.tensor([[True] * 7 + [False] * 3])
    counter.real_tokens = real.reshape(-1)
    with torch.no_grad():
        model(input_ids=ids)
    counted = counter.pop()
    assert counted.sum(-1).tolist() == [7 * model.config.num_experts_per_tok] * model.config.num_hidden_layers
    counter.real_tokens = None
    with torch.no_grad():
        model(input_ids=ids)
    assert counter.pop().sum(-1).tolist() == [10 * model.config.num_experts_per_tok] * model.config.num_hidden_layers
    counter.remove()
