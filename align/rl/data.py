"""Prompt data for the RL stage: TRL's prompt-only rows plus the columns the rewards read.

Accepted rows: `{"prompt": text}` or `{"prompt": [messages ending with a user turn]}` (or TACO/APPS's
`question` and `starter_code`, see `taco_prompt`), plus any other columns
(`answer` for the math reward, `tests` or TACO/APPS's `input_output` for the code reward, or the Klear sets'
`reward_model.ground_truth` for either, with `ability` saying which; provenance), which TRL hands to every
reward function as keyword arguments. A bad row stops the run with one line naming its file, line and field; every
row of a dataset (and of a mixture) must share one format. Decontamination against the judge's benchmarks and
duplicate removal are the shared hygiene step (`align.data.hygiene`, recipe keys `decontaminate`, `dedup`),
on the prompts; the counts go into `data_card.json`, with the prompts' token lengths.
"""

from datasets import Dataset

from align.data.chat import validate_messages
from align.data.sources import DataError, DataReport, Source, read_mixture
from align.data.stage_data import StageDataSpec
from align.rl.rewards_code import check_tests_column


def validate_prompt_row(row: dict, where: str) -> dict:
    """The row with its prompt checked (and an `answer` given as a number turned into text), or `DataError`."""
    if "prompt" not in row and "question" in row and "input_output" in row:
        row = {**row, "prompt": taco_prompt(row, where)}
    prompt = row.get("prompt")
    if prompt is None:
        raise DataError(f"{where}: field 'prompt' is missing (RL rows are prompt-only: a text or a list of messages)")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise DataError(f"{where}: field 'prompt' is empty")
    else:
        prompt = validate_messages(prompt, where, "prompt")
        if prompt[-1]["role"] != "user":
            raise DataError(f"{where}: field 'prompt[{len(prompt) - 1}].role' must be 'user' (the rollout answers it)")
    for field in ("completion", "chosen", "rejected", "messages"):
        if field in row:
            raise DataError(f"{where}: field '{field}' is not read by the RL stage (prompt-only rows): remove it, or "
                            "use the SFT/DPO stage for this data")
    cleaned = {**row, "prompt": prompt}
    answer = row.get("answer")
    if isinstance(answer, bool) or (answer is not None and not isinstance(answer, (str, int, float))):
        raise DataError(f"{where}: field 'answer' must be text or a number, got {type(answer).__name__}")
    if isinstance(answer, (int, float)):
        cleaned["answer"] = str(answer)
    for column in ("tests", "input_output"):  # the code reward's formats, read as they come
        if row.get(column) is not None:
            check_tests_column(row[column], f"{where}: field '{column}'")
    if row.get("reward_model") is not None:
        check_reward_model(row["reward_model"], row.get("ability"), where)
    return cleaned


def check_reward_model(reward_model, ability, where: str) -> None:
    """The Klear sets' (verl's) `reward_model: {"ground_truth": ..., "style": "rule"}`: with `ability: code`
    the ground truth is the code reward's tests (a JSON string), otherwise the math reward's reference
    answer (text, a number, or a list of acceptable answers)."""
    field = f"{where}: field 'reward_model.ground_truth'"
    if not isinstance(reward_model, dict) or "ground_truth" not in reward_model:
        raise DataError(f"{where}: field 'reward_model' must be an object with a 'ground_truth'")
    truth = reward_model["ground_truth"]
    if ability == "code":
        check_tests_column(truth, field)
        return
    answers = truth if isinstance(truth, list) else [truth]
    if not answers or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) and str(a).strip()
                              for a in answers):
        raise DataError(f"{field} must be a non-empty answer (text or a number) or a list of them")


def taco_prompt(row: dict, where: str) -> str:
    """A TACO/APPS row's prompt as those sets come (`question`, `starter_code`, `input_output`, no `prompt`): the
    question, then the starter code (the signature a call-based problem's `fn_name` names) in a python block."""
    question, starter = row["question"], row.get("starter_code") or ""
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: field 'question' must be non-empty text (the TACO/APPS problem statement)")
    if not isinstance(starter, str):
        raise DataError(f"{where}: field 'starter_code' must be text")
    return question.strip() + (f"\n\nStart from this code:\n```python\n{starter.strip()}\n```" if starter.strip() else "")


def read_prompt_rows(sources: list[Source], report: DataReport, seed: int = 0) -> Dataset:
    """Validated, mixed prompt rows: `prompt`, the reward columns, `source` and `location`."""
    return read_mixture(sources, validate_prompt_row, report, seed=seed)


def measure_prompts(rows: Dataset, tokenizer, args, report: DataReport) -> Dataset:
    """The shared builder's `prepare` for RL: GRPOTrainer takes the prompt rows as they are (it tokenises per
    rollout), so only their token lengths (as the trainer will tokenise them) go into the report, and every
    row is kept."""
    report.kept = len(rows)
    lengths = []
    for prompt in rows["prompt"]:
        if isinstance(prompt, str):
            lengths.append(len(tokenizer(prompt, add_special_tokens=False)["input_ids"]))
        else:
            lengths.append(len(tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True,
                                                             return_dict=True)["input_ids"]))
    report.details["prompt_tokens"] = {"max": max(lengths), "mean": round(sum(lengths) / len(lengths), 1),
                                       "rows": len(lengths)}
    return rows


# Read, validate, mix, clean (hygiene) and measure, on the main process, by `align.training.run.prepare_data`.
RL_DATA = StageDataSpec("rl", read=read_prompt_rows, prepare=measure_prompts)
