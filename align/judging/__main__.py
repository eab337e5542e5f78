"""python -m align.judging <command>

  generate         answer MT-Bench / AlignBench with a local model dir or an OpenAI-compatible endpoint
  judge            judge answers (FastChat / THUDM answer files) with an OpenAI-compatible judge
  evaluate         generate + judge + report for a model directory (what training runs call)
  report           rebuild summary.json, report.md, report.html and charts of judge directories
  import-fastchat  turn FastChat's model_judgment/*_single.jsonl or *_pair.jsonl into a judge directory and report
  pairwise         judge answer A vs B for prompts (suggestions for annotators)

The judge endpoint comes from JUDGE_BASE_URL / JUDGE_MODEL / JUDGE_API_KEY (or OPENAI_BASE_URL /
OPENAI_API_KEY), or from --judge-base-url / --judge-model. See docs/judging.md.

Exit status: 0 scores were written; 2 bad input or an endpoint that cannot serve the run (one line,
"error: ..."); 3 the report was written but nothing was scored (every judgment failed or was
unparseable: report.md says why); 1 an unexpected error (a traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .answers import LOCAL_ENGINES
from align.data.benchmarks import DataError, load_alignbench, load_mt_bench
from .config import JudgeConfig, JudgeConfigError, add_judge_arguments, judge_values

logger = logging.getLogger("align.judging")
TENSOR_PARALLEL_HELP = "vLLM engine processes (tensor parallel; default: every visible GPU, 1 on CPU)"


def _judge_config(args: argparse.Namespace) -> JudgeConfig:
    return JudgeConfig.from_mapping(judge_values(args))


def _answer_backend(args: argparse.Namespace):
    from .answers import EndpointBackend, local_backend

    if bool(args.model_dir) == bool(args.endpoint):
        raise ValueError("give exactly one of --model-dir or --endpoint")
    if args.model_dir:
        return local_backend(args.model_dir, engine=args.answer_engine, batch_size=args.batch_size,
                             tensor_parallel_size=args.tensor_parallel_size)
    if not args.endpoint_model:
        raise ValueError("--endpoint needs --endpoint-model")
    return EndpointBackend(args.endpoint, args.endpoint_model, api_key=os.environ.get("ENDPOINT_API_KEY"),
                           concurrency=args.batch_size)


def cmd_generate(args: argparse.Namespace) -> int:
    from .answers import answer_benchmark
    from .tasks import select_questions

    backend = _answer_backend(args)
    model_id = args.model_name or backend.name
    for benchmark in args.benchmark:
        bench = load_mt_bench() if benchmark == "mt_bench" else load_alignbench(args.alignbench_dir)
        questions = select_questions(bench.questions, args.questions_per_category)
        path = answer_benchmark(benchmark, bench, questions, backend, Path(args.out), model_id,
                                max_new_tokens=args.max_new_tokens, n=args.n, seed=args.seed)
        print(f"{benchmark}: {len(questions)} answers -> {path}")
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    from .judgments import JudgeRequest, judge_answers

    out = Path(args.dir)
    mt_bench = args.mt_bench_answers
    alignbench = args.alignbench_answers
    if mt_bench is None and alignbench is None:  # answers generated into DIR by `generate`
        mt_bench = out / "answers" / "mt_bench" if (out / "answers" / "mt_bench").is_dir() else None
        alignbench = out / "answers" / "alignbench" if (out / "answers" / "alignbench").is_dir() else None
    request = JudgeRequest(
        mt_bench_answers=mt_bench,
        alignbench_answers=alignbench,
        mode=args.mode,
        baseline=args.baseline,
        models=tuple(args.models) if args.models else None,
        questions_per_category=args.questions_per_category,
        question_ids=tuple(args.question_ids) if args.question_ids else None,
        alignbench_dir=args.alignbench_dir,
        note=args.note,
    )
    report = judge_answers(out, request, _judge_config(args), cache_dir=args.cache_dir)
    return _print_report(report)


def _print_report(report: Path) -> int:
    summary = json.loads((report.parent / "summary.json").read_text(encoding="utf-8"))
    print(f"report: {report} and {report.with_suffix('.html')}")
    for benchmark, per_model in summary["benchmarks"].items():
        for model, scores in per_model.items():
            value = scores.get("overall", scores.get("win_rate_adjusted"))
            print(f"  {benchmark:14s} {model:30s} {value if value is not None else 'n/a'}")
    counts = summary["counts"]
    print(f"  judgments {counts['judgments']}, failed {counts['judgments_failed']}, judge calls {counts['judge_calls']}")
    scored = any(
        scores.get("overall", scores.get("win_rate_adjusted")) is not None
        for per_model in summary["benchmarks"].values() for scores in per_model.values()
    )
    return 0 if scored else 3


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .config import OPTION_KEYS
    from .saved_model import evaluate_saved_model

    options = {key: value for key, value in vars(args).items() if key in OPTION_KEYS}
    return _print_report(evaluate_saved_model(args.model_dir, args.out, {**options, **judge_values(args)}))


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    for directory in args.dirs:
        print(f"{directory}: {write_report(directory, rebuild=True)}")
    return 0


def cmd_import_fastchat(args: argparse.Namespace) -> int:
    from .fastchat_import import import_fastchat

    return _print_report(import_fastchat(args.judgments, args.out))


def cmd_pairwise(args: argparse.Namespace) -> int:
    from align.data.benchmarks import read_jsonl
    from .pairwise import PairwiseJudgeError, judge_pairs

    if args.pairs:
        rows = read_jsonl(args.pairs, ("prompt", "answer_a", "answer_b"))
        items = [(row["prompt"], row["answer_a"], row["answer_b"], row.get("reference")) for row in rows]
    elif args.prompt and args.answer_a and args.answer_b:
        items = [([{"role": "user", "content": args.prompt}], Path(args.answer_a).read_text(encoding="utf-8"),
                  Path(args.answer_b).read_text(encoding="utf-8"))]
    else:
        raise ValueError("give --pairs FILE, or --prompt with --answer-a FILE and --answer-b FILE")
    failed = 0
    for result in judge_pairs(items, judge=_judge_config(args), cache_dir=args.cache_dir):
        if isinstance(result, PairwiseJudgeError):
            failed += 1
            print(json.dumps({"error": str(result), "raw": result.raw}, ensure_ascii=False))
        else:
            print(json.dumps({"winner": result.winner, "confidence": result.confidence, "judge_model": result.judge_model,
                              "votes": result.votes, "failed_calls": result.failed_calls}, ensure_ascii=False))
    if failed:
        print(f"{failed} of {len(items)} pair(s) got no verdict", file=sys.stderr)
    return 0 if failed < len(items) else 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m align.judging", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    benchmarks = ["mt_bench", "alignbench"]

    gen = sub.add_parser("generate", help="answer the benchmarks")
    gen.add_argument("--benchmark", nargs="+", choices=benchmarks, default=["mt_bench"])
    gen.add_argument("--model-dir", help="local model directory (transformers, Klear included)")
    gen.add_argument("--answer-engine", default="auto", choices=sorted(LOCAL_ENGINES),
                     help="how --model-dir is run (default auto: vLLM when installed, else transformers)")
    gen.add_argument("--tensor-parallel-size", type=int, help=TENSOR_PARALLEL_HELP)
    gen.add_argument("--endpoint", help="OpenAI-compatible base URL to answer with (key: ENDPOINT_API_KEY)")
    gen.add_argument("--endpoint-model", help="model name at --endpoint")
    gen.add_argument("--model-name", help="name for the answers (default: directory or endpoint model name)")
    gen.add_argument("--out", required=True, help="judge directory; answers go to OUT/answers/<benchmark>/")
    gen.add_argument("--n", type=int, default=1, help="answers per question (MT-Bench choices; judged: the first)")
    gen.add_argument("--batch-size", type=int, default=8, help="local batch size, or requests in flight")
    gen.add_argument("--max-new-tokens", type=int, help="default 1024 (MT-Bench, FastChat) / 2048 (AlignBench)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--questions-per-category", type=int, help="only the first N questions of each category")
    gen.add_argument("--alignbench-dir", help="AlignBench data (default $ALIGNBENCH_DIR or ../shared/data/alignbench)")
    gen.set_defaults(func=cmd_generate)

    judge = sub.add_parser("judge", help="judge answers and write the report into DIR")
    judge.add_argument("dir", help="judge directory (runs, cache, report)")
    judge.add_argument("--mt-bench-answers", help="FastChat answer file or directory (model = file name)")
    judge.add_argument("--alignbench-answers", help="THUDM answer file or directory (model = file name)")
    judge.add_argument("--mode", choices=["single", "pairwise", "pairwise-all", "both"], default="single",
                       help="single grading; pairwise against --baseline (FastChat's pairwise-baseline); "
                            "pairwise-all (every pair of models); both = single + pairwise")
    judge.add_argument("--baseline", default="gpt-3.5-turbo", help="pairwise baseline model (among the answers)")
    judge.add_argument("--models", nargs="+", help="judge only these models")
    judge.add_argument("--questions-per-category", type=int, help="only the first N questions of each category")
    judge.add_argument("--question-ids", type=int, nargs="+", help="only these question ids")
    judge.add_argument("--alignbench-dir")
    judge.add_argument("--note", help="free text recorded with the run")
    add_judge_arguments(judge)
    judge.add_argument("--cache-dir", help="judge-call cache (default DIR/cache)")
    judge.set_defaults(func=cmd_judge)

    evaluate = sub.add_parser("evaluate", help="answer with a model directory, judge, report")
    evaluate.add_argument("model_dir")
    evaluate.add_argument("--out", required=True)
    evaluate.add_argument("--benchmark", dest="benchmarks", nargs="+", choices=benchmarks)
    evaluate.add_argument("--questions-per-category", type=int)
    evaluate.add_argument("--max-new-tokens", type=int)
    evaluate.add_argument("--batch-size", type=int)
    evaluate.add_argument("--answer-engine", choices=sorted(LOCAL_ENGINES), help="how the model is run (default auto: vLLM when installed, else transformers)")
    evaluate.add_argument("--tensor-parallel-size", type=int, help=TENSOR_PARALLEL_HELP)
    evaluate.add_argument("--answer-base-url", help="an endpoint serving the model answers instead of loading it here "
                                                    "(key: ENDPOINT_API_KEY)")
    evaluate.add_argument("--answer-model", help="the model's name at --answer-base-url (default: its directory)")
    evaluate.add_argument("--alignbench-dir")
    add_judge_arguments(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    report = sub.add_parser("report", help="rebuild the reports of judge directories")
    report.add_argument("dirs", nargs="+")
    report.set_defaults(func=cmd_report)

    imp = sub.add_parser("import-fastchat", help="import FastChat judgments (*_single.jsonl or *_pair.jsonl)")
    imp.add_argument("judgments", help="FastChat model_judgment/<judge>_single.jsonl or <judge>_pair.jsonl")
    imp.add_argument("--out", required=True)
    imp.set_defaults(func=cmd_import_fastchat)

    pair = sub.add_parser("pairwise", help="judge answer A vs answer B (both orders)")
    pair.add_argument("--pairs", help='JSONL: {"prompt": [messages], "answer_a": str, "answer_b": str} per line, '
                                      'optionally "reference" (str, or one per user turn): FastChat\'s reference-guided judge')
    pair.add_argument("--prompt", help="a single user prompt")
    pair.add_argument("--answer-a", help="file holding answer A")
    pair.add_argument("--answer-b", help="file holding answer B")
    add_judge_arguments(pair)
    pair.add_argument("--cache-dir", help="judge-call cache (default: none)")
    pair.set_defaults(func=cmd_pairwise)
    return parser


# Options that count something (answers, questions, tokens, processes): below 1 they would answer nothing or
# fail deep inside (a thread pool's "max_workers must be greater than 0"), so they are refused by name first.
COUNT_OPTIONS = ("n", "batch_size", "max_new_tokens", "questions_per_category", "tensor_parallel_size")


def check_counts(args: argparse.Namespace) -> None:
    for name in COUNT_OPTIONS:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("httpx", "httpx2", "openai"):  # one INFO line per HTTP request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    from .client import JudgeEndpointError
    from .local_server import LocalServerError

    try:
        check_counts(args)
        return args.func(args)
    except (DataError, JudgeConfigError, JudgeEndpointError, LocalServerError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
