"""A stage's training (and evaluation) set, built once on the main process.

    rows = spec.read(...)                 (validated, mixed rows: a `datasets.Dataset`, nothing tokenised)
    rows = decontaminate ... deduplicate  (align.data.hygiene, as the recipe's `data_hygiene` says)
    data = spec.prepare(...)              (tokenise, measure, ...: `datasets.map` over `dataset_num_proc`)

The builder knows no stage. Each stage declares what its rows are in its own module (SFT and DPO beside
their config class, `align/sft/config.py`, `align/dpo/config.py`; RL in `align/rl/data.py`) and hands that
`StageDataSpec` to `align.training.run.prepare_data`; a new stage adds files, not branches here. E.g. RL:

    RL_DATA = StageDataSpec("rl", read=read_prompt_rows, prepare=measure_prompts)
    # read(sources, report, seed) -> prompt-only rows {"prompt", "answer" | "tests", "source", "location"}
    # prepare(rows, tokenizer, args, report) -> the rows GRPOTrainer takes, their prompt lengths measured

and `align/rl/__main__.py` calls `prepare_data(RL_DATA, script_args, training_args, tokenizer)`.

The other ranks do not read the data at all: they load what the main process saved into
`output_dir/train_data` (see `align.training.run.finalize_data`), so a mixture of a million rows is
read and tokenised once per run, not once per rank.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset

from .hygiene import clean_training_rows
from .sources import DataError, DataReport, Source


@dataclass(frozen=True)
class StageDataSpec:
    """How one stage reads and prepares its rows.

    `read(sources, report, seed=)`: the validated, mixed rows, with `source` (the path a row came from) and
    `location` (`file:line`) columns, every skipped row counted in `report`.
    `prepare(rows, tokenizer, args, report)`: the rows as the stage's trainer takes them (`args` is the
    stage's config), every drop or truncation counted in `report`."""

    name: str
    read: Callable[..., Dataset]
    prepare: Callable[[Dataset, object, object, DataReport], Dataset]


@dataclass
class StageData:
    train: Dataset
    report: DataReport
    eval: Dataset | None = None


def eval_source(args, dataset_name: str | None, test_split: str) -> Source:
    """`eval_dataset_name` when set; else, as TRL's scripts do, the `dataset_test_split` of `dataset_name`,
    which only a hub dataset or a saved DatasetDict has (a single file holds one split)."""
    if args.eval_dataset_name:
        return Source(args.eval_dataset_name)
    single_file = dataset_name and Path(dataset_name).suffix in {".jsonl", ".json", ".gz", ".csv", ".parquet"}
    if args.dataset_mixture or not dataset_name or single_file:
        raise DataError(f"eval_strategy is {args.eval_strategy!r} but eval_dataset_name is not set (the training data "
                        f"has no {test_split!r} split to evaluate on)")
    return Source(dataset_name, split=test_split)


def build_stage_data(spec: StageDataSpec, args, dataset_name: str | None, tokenizer,
                     test_split: str = "test") -> StageData:
    """Read, validate, mix, clean and prepare the training set, and the eval set when the recipe evaluates
    (`eval_strategy` other than "no"). Every count goes into the returned report (the data card; the eval
    set's under "eval")."""
    report = DataReport()
    rows = spec.read(args.mixture_sources(dataset_name), report, seed=args.seed)
    # Benchmark decontamination and duplicate removal on the validated, mixed, not yet tokenised rows
    # (recipe keys decontaminate / dedup; counts in the data card).
    rows = clean_training_rows(rows, args.data_hygiene, report)
    train = spec.prepare(rows, tokenizer, args, report)
    evaluation = None
    if args.eval_strategy != "no":
        eval_report = DataReport()
        eval_rows = spec.read([eval_source(args, dataset_name, test_split)], eval_report, seed=args.seed)
        evaluation = spec.prepare(eval_rows, tokenizer, args, eval_report)
        report.details["eval"] = eval_report.as_dict()
    return StageData(train, report, evaluation)
