"""Benchmark data: MT-Bench (vendored from FastChat) and AlignBench (read from a path, never vendored).

Every reader names the file, the line and the field when the input is bad.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .sources import DataError, read_jsonl_rows

MT_BENCH_DIR = Path(__file__).parent / "benchmark_data" / "mt_bench"
ALIGNBENCH_ENV = "ALIGNBENCH_DIR"
ALIGNBENCH_QUESTIONS = "data_v1.1_release.jsonl"
REPO_ROOT = Path(__file__).resolve().parents[2]

# FastChat common.py: the categories graded against GPT-4's reference answer.
MT_BENCH_NEED_REF_CATEGORIES = ("math", "reasoning", "coding", "arena-hard-200")
# FastChat common.py `temperature_config`; other categories sample at 0.7.
MT_BENCH_TEMPERATURES = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
    "arena-hard-200": 0.0,
}
DEFAULT_TEMPERATURE = 0.7
# AlignBench show_result.py: the two halves of the overall score.
ALIGNBENCH_REASONING = ("数学计算", "逻辑推理")
ALIGNBENCH_LANGUAGE = ("基本任务", "中文理解", "综合问答", "文本写作", "角色扮演", "专业能力")
ALIGNBENCH_OVERALL_KEY = "综合得分"


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> list[dict]:
    """Read a JSONL file, checking that every row is an object holding the `required` fields."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows = []
    for where, row in read_jsonl_rows(path):
        for field in required:
            if field not in row:
                raise DataError(f"{where}: missing field {field!r}")
        rows.append(row)
    return rows


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None


# ----- MT-Bench -----


@dataclass(frozen=True)
class MTBench:
    questions: list[dict]  # {"question_id", "category", "turns": [q1, q2]}
    references: dict[int, list[str]]  # question id -> GPT-4's reference turns
    judge_prompts: dict[str, dict]  # template name -> FastChat's judge prompt record

    def question(self, question_id: int) -> dict:
        for question in self.questions:
            if question["question_id"] == question_id:
                return question
        raise KeyError(question_id)


def load_mt_bench(data_dir: str | Path = MT_BENCH_DIR) -> MTBench:
    data_dir = Path(data_dir)
    question_file = data_dir / "question.jsonl"
    questions = read_jsonl(question_file, ("question_id", "category", "turns"))
    for line_no, question in enumerate(questions, start=1):
        if not (isinstance(question["turns"], list) and len(question["turns"]) == 2):
            raise DataError(f"{question_file}:{line_no}: field 'turns' must hold the two MT-Bench turns")
    reference_file = data_dir / "reference_answer" / "gpt-4.jsonl"
    references = {
        row["question_id"]: row["choices"][0]["turns"]
        for row in read_jsonl(reference_file, ("question_id", "choices"))
    }
    prompt_file = data_dir / "judge_prompts.jsonl"
    prompts = {
        row["name"]: row
        for row in read_jsonl(prompt_file, ("name", "type", "system_prompt", "prompt_template", "output_format"))
    }
    return MTBench(questions, references, prompts)


def mt_bench_temperature(category: str) -> float:
    return MT_BENCH_TEMPERATURES.get(category, DEFAULT_TEMPERATURE)


# ----- AlignBench -----


@dataclass(frozen=True)
class AlignBench:
    questions: list[dict]  # {"question_id", "category", "subcategory", "question", "reference"}
    dimension_sets: dict[str, list[str]]  # answer type -> dimensions
    dimension_definitions: dict[str, str]
    subcategory_types: dict[str, str]  # subcategory -> answer type
    temperatures: dict[str, float]  # category -> answer sampling temperature

    def dimensions(self, subcategory: str) -> list[str]:
        """The dimension set THUDM's judge.py uses for a question (found through its subcategory)."""
        answer_type = self.subcategory_types.get(subcategory)
        if answer_type is None or answer_type not in self.dimension_sets:
            raise DataError(f"AlignBench: subcategory {subcategory!r} has no dimension set in the config")
        return self.dimension_sets[answer_type]

    def temperature(self, category: str) -> float:
        return self.temperatures.get(category, DEFAULT_TEMPERATURE)


def resolve_alignbench_dir(explicit: str | Path | None = None) -> Path:
    """--alignbench-dir, else $ALIGNBENCH_DIR, else ../shared/data/alignbench beside the checkout."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ALIGNBENCH_ENV):
        return Path(os.environ[ALIGNBENCH_ENV])
    return REPO_ROOT.parent / "shared" / "data" / "alignbench"


def alignbench_available(directory: str | Path | None = None) -> bool:
    return (resolve_alignbench_dir(directory) / ALIGNBENCH_QUESTIONS).is_file()


def load_alignbench(directory: str | Path | None = None) -> AlignBench:
    directory = resolve_alignbench_dir(directory)
    question_file = directory / ALIGNBENCH_QUESTIONS
    if not question_file.is_file():
        raise DataError(
            f"{question_file}: AlignBench not found. AlignBench has no licence file and is never vendored; "
            f"get THUDM/AlignBench's data/ and config/ and pass --alignbench-dir or set ${ALIGNBENCH_ENV}"
        )
    questions = read_jsonl(question_file, ("question_id", "category", "subcategory", "question", "reference"))
    config = directory / "config"
    bench = AlignBench(
        questions=questions,
        dimension_sets=read_json(config / "dimension_set.json"),
        dimension_definitions=read_json(config / "dimension_definition.json"),
        subcategory_types=read_json(config / "subcategory_question_mapping.json"),
        temperatures=read_json(config / "temperature.json"),
    )
    for line_no, question in enumerate(questions, start=1):
        try:
            bench.dimensions(question["subcategory"])
        except DataError as err:
            raise DataError(f"{question_file}:{line_no}: field 'subcategory': {err}") from None
    return bench


# ----- answers -----


def load_fastchat_answers(path: str | Path) -> dict[int, list[str]]:
    """FastChat answer file -> {question id: turns of choice 0}. The model is named after the file, as in FastChat."""
    path = Path(path)
    answers: dict[int, list[str]] = {}
    for line_no, row in enumerate(read_jsonl(path, ("question_id", "choices")), start=1):
        choices = row["choices"]
        if not (isinstance(choices, list) and choices and isinstance(choices[0].get("turns"), list)):
            raise DataError(f"{path}:{line_no}: field 'choices' must be a list of {{'index', 'turns'}}")
        if any(not isinstance(turn, str) for turn in choices[0]["turns"]):
            raise DataError(f"{path}:{line_no}: field 'choices[0].turns' must hold strings")
        answers[row["question_id"]] = choices[0]["turns"]
    return answers


def load_alignbench_answers(path: str | Path) -> dict[int, str]:
    """THUDM answer file (get_answers.py) -> {question id: answer}."""
    path = Path(path)
    answers: dict[int, str] = {}
    for line_no, row in enumerate(read_jsonl(path, ("question_id", "answer")), start=1):
        if not isinstance(row["answer"], str):
            raise DataError(f"{path}:{line_no}: field 'answer' is {row['answer']!r}, expected the answer text")
        answers[row["question_id"]] = row["answer"]
    return answers


def answer_files(path: str | Path) -> dict[str, Path]:
    """A file or a directory of *.jsonl answer files -> {model name (file stem): path}."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise DataError(f"{path}: no *.jsonl answer files in this directory")
        return {file.stem: file for file in files}
    if not path.is_file():
        raise DataError(f"{path}: answer file not found")
    return {path.stem: path}


def check_complete(answers: dict[int, object], question_ids: list[int], source: Path) -> None:
    missing = [qid for qid in question_ids if qid not in answers]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise DataError(f"{source}: no answer for {len(missing)} question(s): {shown}")
