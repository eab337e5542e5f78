"""A stage's training (and evaluation) set, built once on the main process.

    rows = read ... validate ... mix      (conversations or pairs, a `datasets.Dataset`, nothing tokenised)
    rows = decontaminate ... deduplicate  (align.data.hygiene, when the recipe asks)
    data = tokenise (SFT) or measure (DPO), with `datasets.map` over `dataset_num_proc` processes

The other ranks do not read the data at all: they load what the main process saved into
`output_dir/train_data` (see `align.training.run.finalize_data`), so a mixture of a million rows is
read and tokenised once per run, not once per rank.
"""

from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset

from .chat import read_chat_rows, tokenize_chat_rows
from .hygiene import clean_training_rows
from .preference import measure_preference_rows, read_preference_rows
from .sources import DataError, DataReport, Source


@dataclass
class StageData:
    train: Dataset
    report: DataReport
    eval: Dataset | None = None


def read_stage_rows(stage: str, sources: list[Source], report: DataReport, seed: int) -> Dataset:
    """The validated, mixed rows of a stage before tokenisation: SFT `messages`, DPO `prompt`/`chosen`/
    `rejected`, plus `source` (the path a row came from) and `location` (`file:line`)."""
    read = read_chat_rows if stage == "sft" else read_preference_rows
    return read(sources, report, seed=seed)


def prepare_stage_rows(stage: str, rows: Dataset, tokenizer, args, report: DataReport) -> Dataset:
    """What the trainer takes: SFT `input_ids` + `assistant_masks`; DPO conversational `prompt`/`chosen`/`rejected`."""
    if stage == "sft":
        return tokenize_chat_rows(rows, tokenizer, args.max_length, report, num_proc=args.dataset_num_proc)
    return measure_preference_rows(rows, tokenizer, args.max_length, args.max_prompt_length, report,
                                   num_proc=args.dataset_num_proc)


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


def build_stage_data(stage: str, args, dataset_name: str | None, tokenizer, test_split: str = "test") -> StageData:
    """Read, validate, mix and tokenise (SFT) or measure (DPO) the training set, and the eval set when
    the recipe evaluates (`eval_strategy` other than "no"). Every count goes into the returned report
    (the data card; the eval set's under "eval")."""
    report = DataReport()
    rows = read_stage_rows(stage, args.mixture_sources(dataset_name), report, args.seed)
    # Benchmark decontamination and duplicate removal on the validated, mixed, not yet tokenised rows
    # (recipe keys decontaminate / dedup; counts in the data card).
    rows = clean_training_rows(rows, args, report)
    train = prepare_stage_rows(stage, rows, tokenizer, args, report)
    evaluation = None
    if args.eval_strategy != "no":
        eval_report = DataReport()
        eval_rows = read_stage_rows(stage, [eval_source(args, dataset_name, test_split)], eval_report, args.seed)
        evaluation = prepare_stage_rows(stage, eval_rows, tokenizer, args, eval_report)
        report.details["eval"] = eval_report.as_dict()
    return StageData(train, report, evaluation)
