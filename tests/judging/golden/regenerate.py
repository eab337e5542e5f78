"""Regenerate the golden files by running FastChat's and THUDM AlignBench's own code.

The goldens pin byte-for-byte prompt construction and document how the upstream parsers
read the trap judgments. They were produced with fschat 0.2.36 (whose fastchat/llm_judge/common.py
is identical to lm-sys/FastChat@0e6d3e4) and THUDM/AlignBench@5b79d4a:

    pip install --target /tmp/fschat --no-deps fschat==0.2.36 anthropic docstring_parser
    git clone https://github.com/THUDM/AlignBench /tmp/AlignBench   # at 5b79d4a
    PYTHONPATH=/tmp/fschat .venv/bin/python tests/judging/golden/regenerate.py \
        --alignbench-src /tmp/AlignBench --alignbench-dir ../shared/data/alignbench

Nothing here is imported by the tests; they read the JSON files it writes. AlignBench
prompts are stored only as SHA-256 digests, since AlignBench's text may not be vendored.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
MT_BENCH_DATA = HERE.parents[2] / "align" / "data" / "benchmark_data" / "mt_bench"

# Answers with characters that trip naive templating: braces, backslashes, unicode, blank lines.
ANSWER_A = ["First {turn} answer with {braces}, a \\backslash and café — ünïcode.\n\nSecond paragraph.  ",
            "Second turn: 42 {x} }{ and a trailing newline\n"]
ANSWER_B = ["Other model's first answer: [1] a citation and [[not a rating]].",
            "Other model's second answer.\n\n- a list\n- of items"]

MT_BENCH_TRAPS = [
    "The answer is accurate and well written. Rating: [[8]]",
    "Helpful [1] and cites sources [2]. Overall I would give it a 7.",
    "Out of scale. Rating: [[15]]",
    "Rating: 8",
    "Decent answer. Rating: [[7.5]]",
    "I first thought [[6]] but on reflection [[8]].",
    "Judging by the format \"[[rating]]\", I give: [[9]]",
]
PAIR_TRAPS = [
    "Assistant A is more detailed. [[A]]",
    "Tie. [[C]]",
    "Format: \"[[A]]\" if A is better, \"[[B]]\" if B is better. My verdict: [[B]]",
    "Both are fine, A slightly better.",
]
ALIGNBENCH_TRAPS = [
    "评价……\n{'事实正确性': 8, '满足用户需求': 7, '清晰度': 9, '完备性': 7, '综合得分': 7}",
    "评价……\n{\"事实正确性\": 8, \"满足用户需求\": 7, \"清晰度\": 9, \"完备性\": 7, \"综合得分\": 7}",
    "评价……\n{'事实正确性': 8.5, '满足用户需求': 7, '清晰度': 9, '完备性': 7, '综合得分': 7.5}",
    "评价……\n{\n  '事实正确性': 8,\n  '综合得分': 6\n}",
    "评价……\n{'事实正确性': 8, '综合得分': 15}",
    "没有给出分数。",
]
# One synthetic question per AlignBench answer type (subcategory -> dimension set).
ALIGNBENCH_SAMPLES = [
    {"category": "专业能力", "subcategory": "音乐", "question": "问题 {x}？", "reference": "参考答案。", "answer": "答案 {y}。"},
    {"category": "数学计算", "subcategory": "初等数学", "question": "1+1=?", "reference": "2", "answer": "等于2。\n\n解释。"},
    {"category": "文本写作", "subcategory": "创意文体写作", "question": "写一首诗", "reference": "诗。", "answer": "春眠不觉晓"},
    {"category": "综合问答", "subcategory": "寻求建议", "question": "怎么办？", "reference": "建议。", "answer": "{'a': 1}"},
]


def fastchat_goldens() -> dict:
    import fastchat.llm_judge.common as common
    from fastchat.llm_judge.gen_judgment import make_judge_pairwise, make_judge_single

    captured: list = []
    reply = {"text": "[[5]]"}

    def fake_chat_completion_openai(model, conv, temperature, max_tokens, api_dict=None):
        captured.append({"messages": conv.to_openai_api_messages(), "temperature": temperature, "max_tokens": max_tokens})
        return reply["text"]

    common.chat_completion_openai = fake_chat_completion_openai
    questions = {q["question_id"]: q for q in common.load_questions(str(MT_BENCH_DATA / "question.jsonl"), None, None)}
    prompts = common.load_judge_prompts(str(MT_BENCH_DATA / "judge_prompts.jsonl"))
    references = common.load_model_answers(str(MT_BENCH_DATA / "reference_answer"))["gpt-4"]
    single, pair = make_judge_single("gpt-4", prompts), make_judge_pairwise("gpt-4", prompts)
    answer_a = {"choices": [{"turns": ANSWER_A}]}
    answer_b = {"choices": [{"turns": ANSWER_B}]}

    def judge_for(judges, question, turn):
        key = ("math" if question["category"] in common.NEED_REF_CATS else "default") + ("-mt" if turn == 2 else "")
        return judges[key]

    cases = []
    for qid in (81, 101, 111, 125, 131):
        for turn in (1, 2):
            question = questions[qid]
            judge = judge_for(single, question, turn)
            ref = references[qid] if judge.ref_based else None
            captured.clear()
            common.run_judge_single(question, answer_a, judge, ref, multi_turn=turn == 2)
            cases.append({"kind": "single", "question_id": qid, "turn": turn, "template": judge.prompt_template["name"],
                          "answer": ANSWER_A, **captured[0]})
    for qid in (81, 111):
        for turn in (1, 2):
            question = questions[qid]
            judge = judge_for(pair, question, turn)
            ref = references[qid] if judge.ref_based else None
            captured.clear()
            reply["text"] = "[[A]]"
            common.run_judge_pair(question, answer_a, answer_b, judge, ref, multi_turn=turn == 2)
            cases.append({"kind": "pair", "question_id": qid, "turn": turn, "template": judge.prompt_template["name"],
                          "answer_a": ANSWER_A, "answer_b": ANSWER_B, **captured[0]})

    ratings = []
    for text in MT_BENCH_TRAPS:
        reply["text"] = text
        rating, _, _ = common.run_judge_single(questions[81], answer_a, single["default"], None)
        ratings.append({"judgment": text, "fastchat_score": rating})
    verdicts = []
    for text in PAIR_TRAPS:
        reply["text"] = text
        winner, _, _ = common.run_judge_pair(questions[81], answer_a, answer_b, pair["default"], None)
        verdicts.append({"judgment": text, "fastchat_winner": winner})
    return {"prompt_cases": cases, "rating_traps": ratings, "pair_traps": verdicts}


def alignbench_goldens(source: Path, data_dir: Path) -> dict:
    spec = importlib.util.spec_from_file_location("alignbench_judge", source / "judge.py")
    judge = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(judge)
    config_dir = data_dir / "config"
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps({
            "OpenAI": {"api_key": "", "api_url": ""},
            "Paths": {
                "dimension_set_filepath": str(config_dir / "dimension_set.json"),
                "dimension_def_filepath": str(config_dir / "dimension_definition.json"),
                "subcategory_mapping": str(config_dir / "subcategory_question_mapping.json"),
                "model_answer_dir": tmp,
                "model_judgement_dir": tmp,
            },
        }))
        config = judge.Config(str(config_path))
        prompts = []
        for sample in ALIGNBENCH_SAMPLES:
            dimensions, prompt = judge.prompt_construct(judge.Sample(**sample), config)
            prompts.append({"sample": sample, "dimensions": dimensions,
                            "prompt_sha256": hashlib.sha256(prompt.encode("utf-8")).hexdigest(), "prompt_chars": len(prompt)})
    parsed = []
    for text in ALIGNBENCH_TRAPS:
        rating, score = judge.post_process(text)
        parsed.append({"judgment": text, "thudm_rating": rating, "thudm_score": score})
    return {"prompt_cases": prompts, "traps": parsed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alignbench-src", type=Path, required=True, help="a THUDM/AlignBench checkout (judge.py)")
    parser.add_argument("--alignbench-dir", type=Path, required=True, help="AlignBench data with config/")
    args = parser.parse_args()
    (HERE / "fastchat_mt_bench.json").write_text(json.dumps(fastchat_goldens(), ensure_ascii=False, indent=1) + "\n")
    (HERE / "thudm_alignbench.json").write_text(
        json.dumps(alignbench_goldens(args.alignbench_src, args.alignbench_dir), ensure_ascii=False, indent=1) + "\n"
    )
    print(f"wrote goldens to {HERE}", file=sys.stderr)


if __name__ == "__main__":
    main()
