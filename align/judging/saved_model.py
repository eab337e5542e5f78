"""Judge a saved model: the one call the training stages make after saving (rank 0 only), and
the `evaluate` command's.

    section = JudgeSection.parse(recipe["judge"])   # with the recipe: a bad section fails before any data
    print(check_judge_config(section, model_config=model.config))   # at startup: does answering fit?
    ...
    report = judge_saved_model(output_dir, Path(output_dir) / "judge", section)

It answers the benchmarks with the saved model (locally, batched), judges the answers and writes
the report (summary.json, report.md, report.html, radar PNGs) into `out_dir`, next to the
earlier runs' so the report compares with them. The section (align.judging.config.JudgeSection; a
mapping or its JSON text is parsed into one) takes the JudgeConfig keys (base_url, model,
concurrency, repeats, parse_retries, max_tokens, ...; the key comes from JUDGE_API_KEY /
OPENAI_API_KEY) and the `AfterTrainingOptions` keys.

With no judge endpoint (neither in `judge_config` nor in JUDGE_BASE_URL / OPENAI_*), the saved
model itself is served by a local `transformers serve` and judges its own answers, with short
judgments and no parse retries: the pipeline runs end to end, and the report says plainly that
such scores mean nothing.

Answering loads the saved model onto one device (the first GPU, else the CPU). A model whose
bf16 weights do not fit there (Klear-46B's 92 GB on an 80 GB GPU) is refused by
`check_judge_config(..., model_config=...)` at startup unless the answers come from elsewhere:
`answer_base_url` (an OpenAI-compatible endpoint serving the saved model, e.g. vLLM over several
GPUs) or the vLLM answer engine. When the model directory holds the data card of the training
data (data_card.json), the report says which benchmarks that data was checked against.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from align.data.benchmarks import DataError, alignbench_available, load_alignbench, load_mt_bench, read_json

from .answers import AnswerBackend, EndpointBackend, answer_benchmark, local_backend, released, resolve_auto_engine
from .config import AfterTrainingOptions, JudgeConfig, JudgeSection
from .judgments import JudgeRequest, judge_answers
from .local_server import serve_model
from .tasks import select_questions

logger = logging.getLogger("align.judging")

LOCAL_JUDGE_WARNING = (
    "No judge endpoint was configured, so the trained model judged its own answers through a local "
    "`transformers serve`. These scores mean nothing; configure a real judge (JUDGE_BASE_URL, JUDGE_MODEL, "
    "JUDGE_API_KEY) for scores that do."
)
LOCAL_JUDGE_DEFAULTS = {"max_tokens": 32, "parse_retries": 0, "concurrency": 2}


def judge_section(judge: JudgeSection | Mapping | str | None) -> JudgeSection:
    """A parsed section as it is, or a mapping / JSON text parsed now (the `evaluate` command's options)."""
    return judge if isinstance(judge, JudgeSection) else JudgeSection.parse(judge)


def vllm_engine_ready(options: AfterTrainingOptions) -> bool:
    """Whether answers will come from vLLM (which can spread a model over several GPUs): the engine
    asked for, with "auto" resolved as answers.auto_backend resolves it, and vLLM importable."""
    installed = importlib.util.find_spec("vllm") is not None
    engine = options.answer_engine
    if engine == "auto":
        engine, _ = resolve_auto_engine(None)  # at startup there is no saved model yet
    return engine == "vllm" and installed


def bf16_weight_bytes(model_config) -> int:
    """Bytes of the model's weights in bf16, counted on the meta device (no memory used, no download)."""
    import torch
    from transformers import AutoModelForCausalLM

    import align  # noqa: F401  (registers Klear)

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    return 2 * sum(parameter.numel() for parameter in model.parameters())


def answer_device() -> tuple[str, int]:
    """(name, bytes of memory) of the device the transformers engine answers on: the first GPU, else RAM."""
    import torch

    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        return f"GPU 0 ({properties.name})", properties.total_memory
    return "the CPU (RAM)", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_answering_fits(options: AfterTrainingOptions, model_config, device: tuple[str, int] | None = None) -> str:
    """Where the answers will come from; raises ValueError when the model cannot be loaded on one
    device for answering and nothing else is configured to answer."""
    if options.answer_base_url:
        return f"answers from {options.answer_base_url}"
    if vllm_engine_ready(options):
        return "answers from vLLM"
    name, available = device or answer_device()
    needed = bf16_weight_bytes(model_config)
    if needed > available:
        raise ValueError(
            f"judge config: answering loads the model onto one device, and its bf16 weights "
            f"({needed / 1e9:.1f} GB) do not fit {name} ({available / 1e9:.1f} GB). Set answer_base_url to an "
            "endpoint serving the saved model (e.g. vLLM over several GPUs), or answer_engine: vllm with vLLM "
            "installed, or enabled: false (and run `python -m align.judging evaluate` later elsewhere)"
        )
    return f"answers with {options.answer_engine} on {name} ({needed / 1e9:.1f} of {available / 1e9:.1f} GB)"


def check_judge_config(judge: JudgeSection | Mapping | str | None, model_config=None) -> str:
    """A one-line description of what will answer and judge; with the model's config, also checks that
    the model can be loaded for answering (raises ValueError). The section's keys and values were checked
    when it was parsed (`JudgeSection.parse`, with the recipe)."""
    section = judge_section(judge)
    if not section.enabled:
        return "judging disabled"
    answers = check_answering_fits(section.options, model_config) if model_config is not None else None
    return section.describe() + (f"; {answers}" if answers else "")


def training_data_facts(model_dir: Path) -> dict | None:
    """The data card's decontamination record (None when the model directory has no data_card.json)."""
    card = model_dir / "data_card.json"
    if not card.is_file():
        return None
    check = read_json(card).get("decontamination")
    if check is not None:
        for field, kind in (("checked_against", list), ("action", str), ("flagged", dict), ("dropped", dict)):
            if not isinstance(check.get(field), kind):
                raise DataError(f"{card}: field 'decontamination.{field}' must be a {kind.__name__}, "
                                f"got {check.get(field)!r}")
        # the counts the report shows (the card's matched examples stay in the card)
        check = {key: check[key] for key in ("checked_against", "action", "rows_checked", "flagged", "dropped")
                 if key in check}
    return {"data_card": str(card), "decontamination": check}


def _saved_config(model_dir: Path):
    from transformers import AutoConfig

    import align  # noqa: F401  (registers Klear)

    return AutoConfig.from_pretrained(model_dir)


def _is_rank_zero() -> bool:
    try:
        import torch.distributed as dist
    except ImportError:
        return True
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _answer_backend(model_dir: Path, options: AfterTrainingOptions) -> AnswerBackend:
    if options.answer_base_url:
        return EndpointBackend(options.answer_base_url, options.answer_model or str(model_dir.resolve()),
                               api_key=os.environ.get("ENDPOINT_API_KEY"), concurrency=options.batch_size)
    return local_backend(model_dir, engine=options.answer_engine, batch_size=options.batch_size)


def _answer(model_dir: Path, out_dir: Path, options: AfterTrainingOptions, benchmarks: list[str],
            model_id: str) -> dict[str, Path]:
    paths = {}
    with released(_answer_backend(model_dir, options)) as backend:  # a vLLM engine's memory, freed for the judge
        for benchmark in benchmarks:
            bench = load_mt_bench() if benchmark == "mt_bench" else load_alignbench(options.alignbench_dir)
            questions = select_questions(bench.questions, options.questions_per_category)
            logger.info("answering %d %s questions with %s", len(questions), benchmark, model_dir)
            paths[benchmark] = answer_benchmark(benchmark, bench, questions, backend, out_dir, model_id,
                                                max_new_tokens=options.max_new_tokens)
    return paths


def _mt_bench_answers(paths: dict[str, Path], options: AfterTrainingOptions) -> Path | None:
    """The answer file, or a directory holding it and the baseline's copy for pairwise judging."""
    if "mt_bench" not in paths:
        return None
    if options.mode == "single":
        return paths["mt_bench"]
    baseline = Path(options.baseline_answers)
    if paths["mt_bench"].parent != baseline.parent:
        shutil.copyfile(baseline, paths["mt_bench"].parent / baseline.name)
    return paths["mt_bench"].parent


def judge_saved_model(model_dir: str | Path, out_dir: str | Path,
                      judge: JudgeSection | Mapping | str | None) -> Path | None:
    """Answer, judge and report; returns report.md, or None when disabled, not rank 0, or failed.

    A bad `judge` section raises at once (the stages parse it with the recipe). A failure while judging
    is logged with its traceback and returns None: the saved model is not affected, and the caller decides.
    """
    section = judge_section(judge)
    options = section.options
    if not options.enabled or not _is_rank_zero():
        return None
    # `evaluate` gets here without the stage's startup check: a model too big to answer is refused now
    description = check_judge_config(section, model_config=_saved_config(Path(model_dir)))
    logger.info("judging %s: %s", model_dir, description)
    benchmarks = list(options.benchmarks or ["mt_bench"] + (
        ["alignbench"] if alignbench_available(options.alignbench_dir) else []
    ))
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    model_id = options.model_name or model_dir.resolve().name
    try:
        paths = _answer(model_dir, out_dir, options, benchmarks, model_id)
        request = JudgeRequest(
            mt_bench_answers=_mt_bench_answers(paths, options),
            alignbench_answers=paths.get("alignbench"),
            mode=options.mode,
            baseline=Path(options.baseline_answers).stem if options.baseline_answers else "gpt-3.5-turbo",
            models=(model_id,),  # DIR/answers may hold other models' answers from earlier runs
            questions_per_category=options.questions_per_category,
            alignbench_dir=options.alignbench_dir,
            note=f"after training {model_dir}",
            training_data=training_data_facts(model_dir),
        )
        judge = section.judge_config()
        if judge is not None:
            return judge_answers(out_dir, request, judge)
        logger.warning("NO JUDGE CONFIGURED: %s", LOCAL_JUDGE_WARNING)
        tuning = {k: v for k, v in section.endpoint.items() if k not in ("base_url", "model", "api_key")}
        with serve_model(model_dir, out_dir / "local_judge_server.log") as server:
            judge = JudgeConfig(base_url=server.base_url, model=server.model, **{**LOCAL_JUDGE_DEFAULTS, **tuning})
            return judge_answers(out_dir, replace(request, warning=LOCAL_JUDGE_WARNING), judge)
    except Exception:
        logger.exception("judging %s failed; the saved model is unaffected", model_dir)
        return None
