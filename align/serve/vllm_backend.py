"""`VLLMBackend`: answers from a local model directory through vLLM's offline engine (`vllm.LLM`).

The judge's answer engine "vllm" (align.judging.answers.LOCAL_ENGINES), chosen by default when vLLM
is installed, and so also `annotation generate`'s. Same contract as `TransformersBackend`: the
model's chat template with add_generation_prompt=True, tokenized the same way (so greedy answers
are the same tokens), temperature below 1e-4 = greedy (decoded once, repeated n times), the same
stop tokens, answers that stop at max_new_tokens kept and counted in `stats["truncated"]`.

`tensor_parallel_size` (the judge's `tensor_parallel_size`, `--tensor-parallel-size` on `align.judging
evaluate|generate` and `annotation generate`) is the number of engine processes; by default every
visible GPU (1 on CPU), with expert parallelism for the MoE layers when there is more than one GPU
(Klear-46B: 8 GPUs of a node, after training has released them). `close()` stops the engine and
waits until its processes have exited (their memory, GPUs included, is then free), and says so. On vLLM's CPU build the KV cache is bounded (align.serve.environment) and the
engine runs eagerly (no torch.compile warm-up) unless `enforce_eager=False` is passed.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

from .environment import cpu_build, vllm_environment

logger = logging.getLogger("align.judging")

GREEDY_BELOW = 1e-4  # align.judging.answers.GREEDY_BELOW (FastChat's rule)


ENGINE_EXIT_TIMEOUT_S = 60.0


def _descendants() -> set:
    """This process's descendants as `psutil.Process`es (equal by pid and start time: a reused pid is another),
    less multiprocessing's resource tracker: the first spawned engine starts it, and it lives as long as this
    process, so waiting for it at close would never end."""
    import psutil

    descendants = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if "multiprocessing.resource_tracker" not in " ".join(child.cmdline()):
                descendants.add(child)
        except psutil.NoSuchProcess:  # exited since the listing
            pass
    return descendants


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class VLLMBackend:
    engine = "vllm"

    def __init__(self, model_dir: str | Path, *, batch_size: int = 8, tensor_parallel_size: int | None = None,
                 expert_parallel: bool | None = None, dtype: str = "auto", max_model_len: int | None = None,
                 seed: int = 0, **engine_args):
        """`batch_size` is accepted for the LOCAL_ENGINES contract; vLLM schedules its own batches.
        Other keyword arguments go to `vllm.LLM` (e.g. gpu_memory_utilization, enforce_eager)."""
        from .server import resolve_expert_parallel

        tensor_parallel_size = tensor_parallel_size or max(visible_gpus(), 1)
        # vLLM reads its settings here: the CPU build's bounded KV cache and its workers' cores
        os.environ.update(vllm_environment(tensor_parallel_size=tensor_parallel_size))
        from vllm import LLM

        self.name = Path(model_dir).name
        if cpu_build():  # torch.compile's warm-up cost 50 s here for a 2x faster decode of a tiny model
            engine_args.setdefault("enforce_eager", True)
        expert_parallel, note = resolve_expert_parallel(tensor_parallel_size, expert_parallel)
        if note:
            logger.warning("%s", note)
        before = _descendants()
        self.llm = LLM(model=str(model_dir), tensor_parallel_size=tensor_parallel_size,
                       enable_expert_parallel=expert_parallel, dtype=dtype, max_model_len=max_model_len,
                       seed=seed, **engine_args)
        self.engine_processes = _descendants() - before  # the engine core and its workers
        self.tokenizer = self.llm.get_tokenizer()
        eos = self.llm.llm_engine.model_config.hf_config.eos_token_id
        eos = list(eos) if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else [])
        self.stop_ids = sorted((set(eos) | {self.tokenizer.eos_token_id}) - {None})
        self.stats: Counter = Counter()

    def prompt_token_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """What TransformersBackend feeds `generate`: the chat template's text, no extra special tokens."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, prompts: list[list[dict[str, str]]], *, temperature: float, max_new_tokens: int, n: int,
                 seed: int) -> list[list[str]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        greedy = temperature < GREEDY_BELOW
        samples = 1 if greedy else n
        params = SamplingParams(n=samples, temperature=0.0 if greedy else temperature, max_tokens=max_new_tokens,
                                seed=None if greedy else seed, stop_token_ids=self.stop_ids, skip_special_tokens=True)
        inputs = [TokensPrompt(prompt_token_ids=self.prompt_token_ids(m)) for m in prompts]
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        results = []
        for output in outputs:
            answers = [completion.text.strip() for completion in output.outputs]
            self.stats["truncated"] += sum(c.finish_reason == "length" for c in output.outputs)
            results.append(answers if samples == n else answers * n)
        self.stats["prompts"] += len(prompts)
        self.stats["answers"] += len(prompts) * n
        self.stats["empty"] += sum(1 for answers in results for answer in answers if not answer)
        return results

    def close(self) -> None:
        """Stop the engine and free its memory (GPUs included) for whatever runs next, e.g. the judge."""
        from .vllm_adapter import shutdown_engine

        import psutil

        shutdown_engine(self.llm)
        self.llm = None
        _, alive = psutil.wait_procs(self.engine_processes, timeout=ENGINE_EXIT_TIMEOUT_S)  # gone ones count as exited
        if alive:
            raise RuntimeError(f"vLLM engine processes {sorted(p.pid for p in alive)} still run "
                               f"{ENGINE_EXIT_TIMEOUT_S:.0f} s after shutdown; their memory is not free")
        logger.info("vLLM engine stopped: its %d process(es) have exited and their memory is free",
                    len(self.engine_processes))
