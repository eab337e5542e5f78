"""Klear on stock vLLM (the CPU build): `python -m align.serve`, the plugin, and the answer engine.

One SFT run (tests/serving/conftest.py: one process, a few steps on the demo data) of a tiny Klear
with head_dim 64 (vLLM's CPU attention has no kernel for the tiny factory's 16) and one
`python -m align.serve --rl-weight-sync` process, as documented (vLLM's default torch.compile, no
--enforce-eager), serve every test here: the server align.rl's `vllm_mode: server` generates from, which
every other client uses as it would a plain one (vLLM 0.32's `logprobs_mode` leaves prompt log-probabilities
alone: vllm/config/model.py, "for prompt_logprobs, processed_* and raw_* yield identical results", and
gpu_model_runner.py's `_get_prompt_logprobs_dict`, which CPUModelRunner inherits). The last two tests
train through it (GPPO in server mode, its weights synced over the CPU build's gloo backend: one process, then
ZeRO-3 with AutoEP over two) and put the SFT weights back. The SFT config keeps `output_router_logits: true`, which
used to stop the compiled path (see align/serve/vllm_adapter.py). The server process never imports `align` itself: the `klear` plugin (vLLM's
`vllm.general_plugins` entry point) registers the model in each of vLLM's processes.

Equality with transformers proves that vLLM ran Klear's own routing (sigmoid scores, choice by score
+ bias, weights from the unbiased scores, the shared-expert blend): the SFT model's routers are
trained and its expert bias is non-zero, so another routing would change the logits.
"""

import json
import os
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from align.judging.answers import EndpointBackend
from align.rl.vllm_server import check_server_info, check_vllm_server

from serving_support import ENGINE_ARGS, MAX_NEW_TOKENS, REPO_ROOT, VLLM_ENV, serve
from tests.markers import needs_vllm

pytestmark = [
    pytest.mark.slow,
    needs_vllm,
]

# fp32 on both sides; vLLM's kernels (paged attention, fused MoE) add in other orders than PyTorch's.
LOGPROB_ATOL = 1e-4


@pytest.fixture(scope="module")
def served(sft_klear, tmp_path_factory):
    """`python -m align.serve SFT_DIR --port 0 --dtype float32 --max-model-len 1024 --rl-weight-sync`."""
    yield from serve(sft_klear[0], tmp_path_factory.mktemp("align-serve") / "serve.log", "--rl-weight-sync")


@pytest.fixture(scope="module")
def transformers_klear(sft_klear):
    """The SFT model and its tokenizer in transformers, fp32: the reference for vLLM's log-probabilities."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(sft_klear[0])
    return AutoModelForCausalLM.from_pretrained(sft_klear[0], dtype=torch.float32).eval(), tokenizer


def prompt_ids(tokenizer, messages) -> list[int]:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]


def test_align_serve_prints_a_loopback_url_and_keeps_klears_routing(served):
    assert served["base_url"].startswith("http://127.0.0.1:") and served["base_url"].endswith("/v1")
    log = served["log"].read_text()
    assert "Resolved architecture: KlearMoeForCausalLM" in log
    assert "Fused: experts (KlearExperts) -> MoERunner (external routing)" in log  # our router chooses
    assert "internal routing" not in log
    assert "enforce_eager=False" in log and "Warming up model for the compilation" in log  # compiled


def test_served_greedy_chat_answers_equal_transformers(served, conversations, transformers_answers):
    backend = EndpointBackend(served["base_url"], served["model"], concurrency=4)
    answers = backend.generate(conversations, temperature=0.0, max_new_tokens=MAX_NEW_TOKENS, n=1, seed=0)
    assert [a[0] for a in answers] == transformers_answers
    assert sum(bool(a) for a in transformers_answers) >= len(transformers_answers) // 2  # real text compared


def test_served_prompt_logprobs_equal_transformers(served, transformers_klear, conversations):
    worst = prompt_logprob_gap(served, transformers_klear, conversations)
    assert worst < LOGPROB_ATOL, f"largest prompt log-prob difference {worst:.2e}"


def prompt_logprob_gap(served, transformers_klear, conversations) -> float:
    """The largest difference between the server's prompt log-probabilities and transformers' (4 chats)."""
    model, tokenizer = transformers_klear
    worst = 0.0
    for messages in conversations[:4]:
        ids = prompt_ids(tokenizer, messages)
        request = {"model": served["model"], "prompt": ids, "max_tokens": 1, "temperature": 0, "prompt_logprobs": 0}
        with urllib.request.urlopen(urllib.request.Request(
                f"{served['base_url']}/completions", data=json.dumps(request).encode(),
                headers={"Content-Type": "application/json"}), timeout=120) as response:
            served_logprobs = json.load(response)["choices"][0]["prompt_logprobs"]
        vllm_lp = torch.tensor([served_logprobs[i][str(ids[i])]["logprob"] for i in range(1, len(ids))])
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, :-1].float()
        hf_lp = logits.log_softmax(-1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
        worst = max(worst, (vllm_lp - hf_lp).abs().max().item())
    return worst


def test_trl_vllm_client_samples_with_log_probabilities_after_temperature(served, transformers_klear, conversations):
    """align.rl's `vllm_mode: server` generator as TRL 1.16's own client sees it (the calls VLLMGeneration makes,
    bar the weight sync: the last two tests): `check_vllm_server` passes, /server_info names the gloo engine (the CPU
    build's default for --rl-weight-sync), the prefix cache resets, and `generate` (token-id prompts, n per prompt) returns each sampled token with its
    log-probability after temperature: log_softmax(logits / T) of transformers' forward over prompt + completion,
    which is what TRL's importance-sampling correction compares with the trainer's."""
    from trl.generation.vllm_client import VLLMClient

    model, tokenizer = transformers_klear
    url = served["base_url"].removesuffix("/v1")  # TRL's base URL is the server's root
    info = check_vllm_server(SimpleNamespace(vllm_server_base_url=url, vllm_server_timeout=10.0, use_cpu=True))
    assert info["model_config"]["logprobs_mode"] == "processed_logprobs"
    client = VLLMClient(base_url=url, connection_timeout=10.0)
    assert client.model == served["model"]
    assert client.get_server_info()["weight_transfer_config"]["backend"] == "gloo"
    assert "Creating weight transfer engine: GlooWeightTransferEngine" in served["log"].read_text()
    client.reset_prefix_cache()  # a development endpoint TRL calls after every weight sync

    temperature, n = 0.5, 2
    prompts = [prompt_ids(tokenizer, messages) for messages in conversations[:2]]
    output = client.generate(prompts, n=n, temperature=temperature, max_tokens=8, logprobs=0,
                             generation_kwargs={"seed": 0})
    assert output["prompt_ids"] == prompts and len(output["completion_ids"]) == n * len(prompts)
    worst, raw_gap = 0.0, 0.0
    for index, completion in enumerate(output["completion_ids"]):
        prompt = prompts[index // n]  # prompt-major: a prompt's n completions come together
        assert completion and output["logprob_token_ids"][index] == [[token] for token in completion]
        served_lp = torch.tensor([position[0] for position in output["logprobs"][index]])
        with torch.no_grad():
            logits = model(torch.tensor([prompt + completion])).logits[0, len(prompt) - 1:-1].float()
        sampled = torch.tensor(completion)[:, None]
        after_temperature = (logits / temperature).log_softmax(-1).gather(-1, sampled)[:, 0]
        raw = logits.log_softmax(-1).gather(-1, sampled)[:, 0]
        worst = max(worst, (served_lp - after_temperature).abs().max().item())
        raw_gap = max(raw_gap, (served_lp - raw).abs().max().item())
    assert worst < LOGPROB_ATOL / temperature, f"largest sampled log-prob difference {worst:.2e}"
    assert raw_gap > 100 * LOGPROB_ATOL  # not the raw log-probabilities: the temperature was applied


def test_annotation_generate_answers_through_the_vllm_server(served, conversations, tmp_path):
    from annotation.generate import generate_candidates

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": m[-1]["content"]}) + "\n" for m in conversations[:3]))
    summary = generate_candidates(prompts, tmp_path / "pairs.jsonl", [served["model"]], base_url=served["base_url"],
                                  samples=2, temperature=1.0, max_new_tokens=MAX_NEW_TOKENS)
    assert "of 3 prompts, 1 model(s) x 2 sample(s)" in summary and summary.endswith("answers from endpoint")
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert rows and all({c["model"] for c in row["completions"]} == {served["model"]} for row in rows)


def test_judge_hook_answers_with_vllm_when_installed(served, sft_klear, tmp_path):
    """`align.judging evaluate` (the after-training hook) with the default engine, auto: vLLM's offline
    engine answers MT-Bench; the served model judges (a tiny model: its scores mean nothing). The engine
    is named once, with its tensor-parallel size, and its processes have exited before the judge is asked.
    (Size 1: a second offline engine of 2 processes would add about a minute to CI; TP 2 itself is
    tested through align.serve in test_vllm_tensor_parallel.py.)"""
    out = tmp_path / "judge"
    env = {**os.environ, **VLLM_ENV}
    env.pop("ALIGN_ANSWER_ENGINE", None)  # tests/conftest.py defaults it to transformers
    result = subprocess.run(
        [sys.executable, "-m", "align.judging", "evaluate", str(sft_klear[0]), "--out", str(out),
         "--benchmark", "mt_bench", "--questions-per-category", "1", "--max-new-tokens", "8",
         "--judge-base-url", served["base_url"], "--judge-model", served["model"], "--judge-max-tokens", "8",
         "--parse-retries", "0", "--tensor-parallel-size", "1"],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=600,
    )
    log = result.stderr
    assert "answers with vllm, tensor parallel 1 (vLLM is installed); 8 mt_bench questions (16 answers, 16 judgments)" \
        in log, log[-3000:]
    assert "answering with transformers" not in log and "answers from vLLM" not in log
    stopped = log.index("vLLM engine stopped: its ")
    assert "process(es) have exited and their memory is free" in log[stopped:stopped + 120]
    assert stopped < log.index("judge endpoint: ")  # released before the judge's first request
    stats = json.loads(next((out / "answers" / "mt_bench").glob("*.stats.json")).read_text())
    assert stats["engine"] == "vllm" and stats["answers"] == 2 * stats["questions"] == 16
    # 3: no score came out, the tiny judge's replies carry no "[[rating]]"; the report is written either way
    assert result.returncode in (0, 3), result.stderr[-3000:]
    assert (out / "report.md").is_file()


def test_a_trainer_without_cuda_is_told_to_use_gloo_against_an_nccl_server(served):
    """`check_server_info` on the served configuration, as it is and with the two settings a trainer cannot use."""
    url = served["base_url"].removesuffix("/v1")
    with urllib.request.urlopen(f"{url}/server_info?config_format=json", timeout=30) as response:
        info = json.load(response)["vllm_config"]
    check_server_info(info, url, trainer_has_cuda=False)  # gloo: any trainer
    nccl = {**info, "weight_transfer_config": {**info["weight_transfer_config"], "backend": "nccl"}}
    check_server_info(nccl, url, trainer_has_cuda=True)
    with pytest.raises(ValueError) as error:
        check_server_info(nccl, url, trainer_has_cuda=False)
    assert str(error.value) == (f"vllm_mode server: the vLLM server at {url} syncs weights over NCCL, which needs a "
                                "CUDA device for the trainer: start it with `python -m align.serve CHECKPOINT "
                                "--rl-weight-sync --rl-weight-sync-backend gloo` (docs/rl.md, Generation)")
    raw = {**info, "model_config": {**info["model_config"], "logprobs_mode": "raw_logprobs"}}
    with pytest.raises(ValueError, match="returns raw_logprobs log-probabilities; TRL compares them"):
        check_server_info(raw, url, trainer_has_cuda=False)


def sft_weights(sft_klear) -> dict:
    """The SFT checkpoint's own tensors, official names."""
    from safetensors.torch import load_file

    return {name: tensor for shard in sorted(sft_klear[0].glob("*.safetensors"))
            for name, tensor in load_file(shard).items()}


def connected_client(served, chunk_bytes: int | None = None):
    """align.rl's client with its gloo group open to the server, as a server-mode trainer holds it."""
    from align.common.ports import free_loopback_port
    from align.rl.vllm_client import KlearVLLMClient

    client = KlearVLLMClient(base_url=served["base_url"].removesuffix("/v1"), group_port=free_loopback_port(),
                             connection_timeout=10.0)
    if chunk_bytes:
        client.chunk_bytes = chunk_bytes
    client.init_communicator()
    return client


def send_weights(client, weights: dict) -> None:
    client.update_named_params([(name, str(t.dtype).removeprefix("torch."), list(t.shape))
                                for name, t in weights.items()], iter(weights.items()))


@contextmanager
def sft_weights_put_back(served, sft_klear):
    """Around a run that trains the served model: afterwards the SFT checkpoint's own tensors (official names) go
    back into the server through align.rl's client, exactly (the tests above could run again)."""
    try:
        yield
    finally:
        client = connected_client(served)
        send_weights(client, sft_weights(sft_klear))
        client.reset_prefix_cache()
        client.close_communicator()


def test_a_refused_update_is_reported_at_once_and_the_server_keeps_serving(served, sft_klear, transformers_klear,
                                                                         conversations):
    """Two updates the server refuses, sent in 64 KiB chunks so that the trainer still has chunks to send after the
    server's load fails: a name vLLM's Klear lacks (the first tensor), then an update without one norm weight. Each
    fails the trainer's call with HTTP 500 as soon as it has sent its chunks (the server receives the rest rather
    than leave the trainer's broadcast waiting for the group timeout), the server's log names the cause, and the
    server still serves (the SFT weights, exactly); the trainer connects again and the server takes its next update."""
    weights = sft_weights(sft_klear)
    left_out = next(name for name in weights if name.endswith("layers.0.input_layernorm.weight"))
    with sft_weights_put_back(served, sft_klear):
        client = connected_client(served, chunk_bytes=64 * 2**10)
        refused = served["log"].read_text().count('"POST /update_weights HTTP/1.1" 500')
        with pytest.raises(RuntimeError, match="update_weights: HTTP 500"):
            send_weights(client, {"model.layers.0.mlp.no_such.weight": torch.zeros(4), **weights})
        with pytest.raises(RuntimeError, match="call init_communicator again"):  # the failed update dropped it
            send_weights(client, weights)
        client.init_communicator()
        with pytest.raises(RuntimeError, match="update_weights: HTTP 500"):
            send_weights(client, {name: t for name, t in weights.items() if name != left_out})
        client.init_communicator()
        log = served["log"].read_text()
        assert log.count('"POST /update_weights HTTP/1.1" 500') == refused + 2
        assert "no_such" in log and "left 1 of its parameters unloaded" in log
        assert prompt_logprob_gap(served, transformers_klear, conversations) < LOGPROB_ATOL
        send_weights(client, weights)
        client.close_communicator()
    assert prompt_logprob_gap(served, transformers_klear, conversations) < LOGPROB_ATOL


def server_mode_args(served, sft_klear, out: Path, steps: int) -> list[str]:
    """`align.rl`'s arguments for GPPO from the SFT model with rollouts from the served one."""
    from align.common.ports import free_loopback_port
    from align.data.demo import write_demo_data

    data = write_demo_data(out.parent / "data", n_train=32, n_eval=4)
    return ["--config", "configs/rl/tiny.yaml", "--model_name_or_path", str(sft_klear[0]), "--dataset_name",
            str(data["rl"]), "--output_dir", str(out), "--max_steps", str(steps), "--bf16", "false", "--dtype",
            "float32", "--report_to", "none", "--use_vllm", "true", "--vllm_mode", "server",
            "--vllm_server_base_url", served["base_url"].removesuffix("/v1"),
            "--vllm_group_port", str(free_loopback_port()),
            # random-text completions differ in length parity: groups with variance, so the weights move
            "--reward_funcs", "tests.rl.learning_task.even_length"]


def weight_updates(served) -> int:
    return served["log"].read_text().count('"POST /finish_weight_update HTTP/1.1" 200')


# The last two tests train the served model; each puts the SFT weights back.

def test_gppo_in_server_mode_syncs_the_served_policy_before_each_generation(served, sft_klear, transformers_klear,
                                                                           conversations, tmp_path):
    """`python -m align.rl` with `vllm_mode: server`, 3 steps, one process: the weights reach the server over gloo
    before the generation batches of steps 0 and 2 (steps_per_generation 2). TRL logs the sampler's
    log-probabilities against the trainer's: after an optimiser step they agree only if the server got the new
    weights (1e-6 here; 0.56 with the sync switched off, by hand)."""
    from tests.rl.saved_model import logp_gaps

    out, updates = tmp_path / "out", weight_updates(served)
    with sft_weights_put_back(served, sft_klear):
        done = subprocess.run([sys.executable, "-m", "align.rl", *server_mode_args(served, sft_klear, out, steps=3)],
                              capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
        log = done.stdout + done.stderr
        assert done.returncode == 0, log[-4000:]
        gaps = logp_gaps(log)
        assert len(gaps) == 2 and max(gaps) < LOGPROB_ATOL, gaps
        summary = json.loads((out / "training_summary.json").read_text())
        assert summary["global_steps"] == 3 and (summary["first_loss"] != 0 or summary["final_loss"] != 0)
        assert weight_updates(served) == updates + 2
        assert prompt_logprob_gap(served, transformers_klear, conversations) > 100 * LOGPROB_ATOL  # trained weights
    assert prompt_logprob_gap(served, transformers_klear, conversations) < LOGPROB_ATOL  # the SFT weights, back


def test_server_mode_under_zero3_and_expert_parallel_sends_every_expert(served, sft_klear, transformers_klear,
                                                                        conversations, tmp_path):
    """`accelerate launch` with 2 CPU processes, ZeRO-3 and AutoEP 2 (tiny.yaml's DeepSpeed config), 2 steps, one
    generation batch each: each rank holds 4 of the 8 experts, fused under AutoEP's names; the main process
    streams the whole policy (`align.training.autoep.iter_full_weights`) while the other rank serves its experts'
    gathers, and the server refuses an update that leaves any parameter unloaded. The second batch's sampler
    log-probabilities equal the trainer's after one optimiser step only if every expert arrived."""
    from tests.distributed import run_2proc
    from tests.rl.saved_model import assert_loads_and_answers, logp_gaps

    out, updates = tmp_path / "out", weight_updates(served)
    with sft_weights_put_back(served, sft_klear):
        run_2proc(["-m", "align.rl"], [*server_mode_args(served, sft_klear, out, steps=2), "--steps_per_generation",
                                       "1", "--per_device_train_batch_size", "4"], log=tmp_path / "launch.log")
        gaps = logp_gaps((tmp_path / "launch.log").read_text(errors="replace"))
        assert len(gaps) == 2 and max(gaps) < LOGPROB_ATOL, gaps
        summary = json.loads((out / "training_summary.json").read_text())
        assert summary["world_size"] == 2 and [r["experts_held"] for r in summary["expert_parallel_layout"]] == [4, 4]
        assert weight_updates(served) == updates + 2
    assert_loads_and_answers(out)
    assert prompt_logprob_gap(served, transformers_klear, conversations) < LOGPROB_ATOL
