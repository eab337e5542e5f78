"""GPPO with rollouts from vLLM's CPU build, colocated in the trainer's one process (TRL's `use_vllm`,
`vllm_mode: colocate`), on a tiny Klear with head_dim 64 (vLLM's CPU attention has no kernel for the tiny
factory's 16). Each step's weights reach the engine through `align.serve.vllm_adapter.reload_weights`; a weight
left out or renamed fails the sync. Subprocesses: vLLM decorates Klear's class in the process that builds it."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from align.data.demo import write_demo_data
from align.models.klear.tiny import build_tiny_klear
from tests.conftest import REPO_ROOT
from tests.markers import needs_vllm
from tests.rl.saved_model import logp_gaps

pytestmark = [
    pytest.mark.slow,
    needs_vllm,
]
STEPS = 3
# vLLM CPU build's KV cache in GiB (else a fraction of the machine's memory: vllm_gpu_memory_utilization). The
# training run needs nothing else: TRL's colocated engine (`external_launcher`) sets torch.distributed's variables
# and runs the engine in the trainer's process.
KV_CACHE = {"VLLM_CPU_KVCACHE_SPACE": "1"}
# A bare `vllm.LLM` (the sync check) starts an engine-core process unless told not to; `reload_weights` needs the
# engine in the caller's process, as TRL's colocated one is.
IN_PROCESS_ENGINE = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


@pytest.fixture(scope="module")
def tiny_hd64(tmp_path_factory):
    return build_tiny_klear(tmp_path_factory.mktemp("rl-vllm") / "tiny-hd64", seed=0, head_dim=64)


def run_python(args, tmp_path, env=KV_CACHE):
    done = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)
    (tmp_path / "log.txt").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout + done.stderr


def test_gppo_generates_with_colocated_vllm_and_syncs_each_step(tiny_hd64, tmp_path):
    data = write_demo_data(tmp_path / "data", n_train=32, n_eval=4)
    out = tmp_path / "out"
    log = run_python(
        ["-m", "align.rl", "--config", "configs/rl/tiny.yaml", "--model_name_or_path", str(tiny_hd64),
         "--dataset_name", str(data["rl"]), "--output_dir", str(out), "--max_steps", str(STEPS),
         "--use_vllm", "true", "--vllm_mode", "colocate", "--vllm_gpu_memory_utilization", "0.1",
         "--vllm_enforce_eager", "true",  # no torch.compile of the decoder at engine start
         "--bf16", "false", "--dtype", "float32", "--report_to", "none",
         # random-text completions differ in length parity: groups with variance, so the weights move
         "--reward_funcs", "tests.rl.learning_task.even_length"],
        tmp_path,
    )
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["global_steps"] == STEPS
    # TRL logs the sampler's log-probabilities against the trainer's only for vLLM rollouts; after the first
    # optimiser step they agree only if the engine got the new weights (1e-6 here; 0.53 with the sync switched off)
    gaps = logp_gaps(log)
    assert len(gaps) == 2, log[-3000:]  # generation batches at steps 0 and 2 (steps_per_generation 2)
    assert max(gaps) < 1e-4, gaps
    assert summary["first_loss"] != 0 or summary["final_loss"] != 0
    assert len(list((out / "rollouts").glob("batch_*.jsonl"))) == 2


SYNC_CHECK = textwrap.dedent("""
    import sys, torch, vllm
    from transformers import AutoModelForCausalLM
    from align.serve.vllm_adapter import reload_weights
    from align.rl.vllm_sync import policy_weights
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)  # before vLLM decorates its class
    llm = vllm.LLM(sys.argv[1], dtype="float32", enforce_eager=True, max_model_len=128)
    named = list(model.named_parameters())
    # a reload of the engine's own weights changes nothing (the CPU build's expert prepacking is redone)
    probe = vllm.SamplingParams(max_tokens=1, prompt_logprobs=0)
    def prompt_logprobs():
        out = llm.generate([{"prompt_token_ids": list(range(5, 60))}], probe, use_tqdm=False)[0].prompt_logprobs[1:]
        return torch.tensor([next(iter(position.values())).logprob for position in out])
    loaded = prompt_logprobs()
    reload_weights(llm, iter(named))
    print("reload gap", (prompt_logprobs() - loaded).abs().max().item())
    # the colocated sync's weights: TRL's parameters (in one process without DeepSpeed, `named_parameters`), then
    # the buffers; a moved expert bias must reach the engine
    bias = model.model.layers[0].mlp.routed.gate.e_score_correction_bias
    with torch.no_grad():
        bias.add_(0.5)
    reload_weights(llm, policy_weights(model, lambda: iter(named)))
    engine = dict(llm.llm_engine.model_executor.driver_worker.model_runner.get_model().named_buffers())
    print("bias", "SYNCED" if torch.equal(engine["model.layers.0.mlp.routed.gate.e_score_correction_bias"], bias)
          else "STALE")
    for label, weights in [
        ("missing", [(n, p) for n, p in named if n != "model.layers.1.mlp.routed.experts.down_proj"]),
        ("renamed", [(n.replace("routed.experts.", "routed.expert."), p) for n, p in named]),
    ]:
        try:
            reload_weights(llm, iter(weights))
            print(label, "SYNCED")
        except ValueError as error:
            print(label, "REFUSED", str(error)[:160])
""")


def test_weight_sync_is_exact_moves_the_expert_bias_and_refuses_a_missing_or_renamed_expert_weight(tiny_hd64, tmp_path):
    log = run_python(["-c", SYNC_CHECK, str(tiny_hd64)], tmp_path, env={**KV_CACHE, **IN_PROCESS_ENGINE})
    assert "reload gap 0.0\n" in log  # 0.013 before the prepacking was redone
    assert "bias SYNCED" in log
    assert "missing REFUSED weight sync to vLLM left 1 of its parameters unloaded: " \
           "model.layers.1.mlp.routed.experts.routed_experts.w2_weight" in log
    assert "renamed REFUSED There is no module or parameter named 'model.layers.0.mlp.routed.expert" in log
