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

import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from align.data.benchmarks import DataError, alignbench_available, load_alignbench, load_mt_bench, read_json
from align.serve.environment import vllm_installed

from .answers import AnswerBackend, EndpointBackend, answer_benchmark, local_backend, released, resolve_auto_engine
from .config import AfterTrainingOptions, JudgeConfig, JudgeSection
from .client import JudgeAPIError
from .judgments import JudgeRequest, judge_answers
from .local_server import LocalServerError, serve_model
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


def answer_engine(options: AfterTrainingOptions, *, model_dir: Path | None = None,
                  config: dict | None = None) -> tuple[str, str]:
    """(engine, why): the local engine that answers, the one asked for or auto's choice for this model
    (its directory, or its config before training has saved it)."""
    if options.answer_engine != "auto":
        return options.answer_engine, f"answer_engine: {options.answer_engine}"
    return resolve_auto_engine(model_dir, config=config)


def bf16_weight_bytes(model_config) -> int:
    """Bytes of the model's weights in bf16, counted on the meta device (no memory used, no download).

    The model class is built directly, not through `from_config`: at a ZeRO-3 stage's startup (the judge
    is checked before the policy loads) `from_config` would enter `deepspeed.zero.Init`, which cannot
    partition meta tensors ("Cannot copy out of meta tensor")."""
    import torch

    import align  # noqa: F401  (registers Klear)
    from align.training.compat import causal_lm_class

    with torch.device("meta"):
        model = causal_lm_class(model_config)(model_config)
    return 2 * sum(parameter.numel() for parameter in model.parameters())


def answer_device() -> tuple[str, int]:
    """(name, bytes of memory) of the device the transformers engine answers on: the first GPU, else RAM."""
    import torch

    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        return f"GPU 0 ({properties.name})", properties.total_memory
    return "the CPU (RAM)", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_answering_fits(options: AfterTrainingOptions, model_config,
                         device: tuple[str, int] | None = None) -> tuple[str | None, str]:
    """(the local engine that answers, None when `answer_base_url` does; which answers, and why, in one phrase);
    raises ValueError when that engine cannot: vLLM not installed, or the model not loadable on one device for
    transformers (with nothing else configured)."""
    if options.answer_base_url:
        return None, f"answers from {options.answer_base_url}"
    engine, why = answer_engine(options, config=model_config.to_dict())
    size = options.tensor_parallel_size
    if engine == "vllm":
        if not vllm_installed():
            raise ValueError("judge config: answer_engine vllm, but vLLM is not installed (pip install "
                             "'klear-align[vllm]'), or answer_engine: transformers")
        return engine, f"answers with vllm{f', tensor parallel {size}' if size else ''} ({why})"
    if size is not None and size > 1:
        raise ValueError(f"judge config: tensor_parallel_size {size} needs the vLLM engine, but transformers "
                         f"answers here ({why})")
    name, available = device or answer_device()
    needed = bf16_weight_bytes(model_config)
    if needed > available:
        raise ValueError(
            f"judge config: answering loads the model onto one device, and its bf16 weights "
            f"({needed / 1e9:.1f} GB) do not fit {name} ({available / 1e9:.1f} GB). Set answer_base_url to an "
            "endpoint serving the saved model (e.g. vLLM over several GPUs), or answer_engine: vllm with vLLM "
            "installed, or enabled: false (and run `python -m align.judging evaluate` later elsewhere)"
        )
    return engine, f"answers with transformers on {name} ({why}; {needed / 1e9:.1f} of {available / 1e9:.1f} GB)"


def check_judge_config(judge: JudgeSection | Mapping | str | None, model_config=None) -> str:
    """A one-line description of what will answer and judge; with the model's config, also checks that
    the model can be loaded for answering (raises ValueError). The section's keys and values were checked
    when it was parsed (`JudgeSection.parse`, with the recipe)."""
    section = judge_section(judge)
    if not section.enabled:
        return "judging disabled"
    answers = check_answering_fits(section.options, model_config)[1] if model_config is not None else None
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


def _answer_backend(model_dir: Path, options: AfterTrainingOptions, engine: str | None) -> AnswerBackend:
    """`engine` as `check_answering_fits` chose it (None: `answer_base_url` answers)."""
    if options.answer_base_url:
        return EndpointBackend(options.answer_base_url, options.answer_model or str(model_dir.resolve()),
                               api_key=os.environ.get("ENDPOINT_API_KEY"), concurrency=options.batch_size)
    return local_backend(model_dir, engine=engine, batch_size=options.batch_size,
                         tensor_parallel_size=options.tensor_parallel_size)


def _questions(options: AfterTrainingOptions, benchmarks: list[str]) -> dict[str, tuple]:
    """benchmark -> (its data, the questions to answer)."""
    chosen = {}
    for benchmark in benchmarks:
        bench = load_mt_bench() if benchmark == "mt_bench" else load_alignbench(options.alignbench_dir)
        chosen[benchmark] = (bench, select_questions(bench.questions, options.questions_per_category))
    return chosen


def workload(questions: dict[str, tuple], options: AfterTrainingOptions) -> str:
    """How much answering and judging is ahead, e.g. "80 mt_bench questions (160 answers, 160 judgments)"."""
    parts = []
    for benchmark, (_, chosen) in questions.items():
        per_question = 2 if benchmark == "mt_bench" else 1  # MT-Bench: two turns, each judged
        parts.append(f"{len(chosen)} {benchmark} questions ({per_question * len(chosen)} answers, "
                     f"{per_question * len(chosen)} judgments)")
    text = ", ".join(parts)
    if options.questions_per_category is None:
        text += "; --questions-per-category 1 (questions_per_category: 1) answers one question per category"
    return text


def _answer(model_dir: Path, out_dir: Path, options: AfterTrainingOptions, questions: dict[str, tuple],
            model_id: str, engine: str | None) -> dict[str, Path]:
    paths = {}
    with released(_answer_backend(model_dir, options, engine)) as backend:  # a vLLM engine's memory, freed for the judge
        for benchmark, (bench, chosen) in questions.items():
            logger.info("answering %d %s questions with %s", len(chosen), benchmark, model_dir)
            paths[benchmark] = answer_benchmark(benchmark, bench, chosen, backend, out_dir, model_id,
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


def evaluate_saved_model(model_dir: str | Path, out_dir: str | Path,
                         judge: JudgeSection | Mapping | str | None) -> Path | None:
    """Answer, judge and report; returns report.md, or None when disabled or not rank 0. Raises on
    failure (the `evaluate` command's one line and exit code); training stages call judge_saved_model."""
    section = judge_section(judge)
    options = section.options
    if not options.enabled or not _is_rank_zero():
        return None
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    # `evaluate` gets here without the stage's startup check: a model too big to answer is refused now. The
    # engine chosen here answers (said once, in the "judging ..." line).
    engine, answers = check_answering_fits(options, _saved_config(model_dir))
    description = f"{section.describe()}; {answers}"
    benchmarks = list(options.benchmarks or ["mt_bench"] + (
        ["alignbench"] if alignbench_available(options.alignbench_dir) else []
    ))
    questions = _questions(options, benchmarks)
    judge = section.judge_config()
    logger.log(logging.INFO if judge else logging.WARNING, "judging %s: %s; %s", model_dir, description,
               workload(questions, options))
    model_id = options.model_name or model_dir.resolve().name
    paths = _answer(model_dir, out_dir, options, questions, model_id, engine)
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
    if judge is not None:
        return judge_answers(out_dir, request, judge)
    tuning = {k: v for k, v in section.endpoint.items() if k not in ("base_url", "model", "api_key")}
    with serve_model(model_dir, out_dir / "local_judge_server.log") as server:
        judge = JudgeConfig(base_url=server.base_url, model=server.model, **{**LOCAL_JUDGE_DEFAULTS, **tuning})
        return judge_answers(out_dir, replace(request, warning=LOCAL_JUDGE_WARNING), judge)


def judge_saved_model(model_dir: str | Path, out_dir: str | Path,
                      judge: JudgeSection | Mapping | str | None) -> Path | None:
    """evaluate_saved_model for the training stages: a bad `judge` section raises at once (the stages parse
    it with the recipe); a failure while judging is logged (one line when it is the endpoint's or the
    data's, a traceback otherwise) and returns None: the saved model is not affected, and the caller decides."""
    section = judge_section(judge)
    try:
        return evaluate_saved_model(model_dir, out_dir, section)
    except (JudgeAPIError, DataError, LocalServerError) as err:
        logger.error("judging %s failed: %s; the saved model is unaffected", model_dir, err)
    except Exception:
        logger.exception("judging %s failed; the saved model is unaffected", model_dir)
    return None
