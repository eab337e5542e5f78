"""Local answer generation with transformers (the random tiny Klear), batched with the chat template."""

import pytest

from align.judging.answers import TransformersBackend, answer_benchmark, generate_answers
from align.data.benchmarks import load_fastchat_answers, load_mt_bench
from align.judging.tasks import select_questions


@pytest.fixture(scope="module")
def backend(tiny_klear_dir):
    return TransformersBackend(tiny_klear_dir, batch_size=4, device="cpu")


PROMPTS = [[{"role": "user", "content": "Hi " * (i + 1)}] for i in range(5)] + [
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]
]


def test_batched_left_padded_greedy_equals_one_at_a_time(backend):
    batched = generate_answers(PROMPTS, backend, temperature=0.0, max_new_tokens=8)
    one_by_one = [generate_answers([p], backend, temperature=0.0, max_new_tokens=8)[0] for p in PROMPTS]
    assert batched == one_by_one
    assert all(len(answers) == 1 for answers in batched)


def test_n_samples_and_truncation_is_counted(backend):
    before = dict(backend.stats)
    answers = generate_answers(PROMPTS[:2], backend, temperature=0.9, max_new_tokens=6, n=3, seed=1)
    assert [len(a) for a in answers] == [3, 3]
    assert answers == generate_answers(PROMPTS[:2], backend, temperature=0.9, max_new_tokens=6, n=3, seed=1)
    assert backend.stats["answers"] - before.get("answers", 0) == 12  # 2 x 3, twice
    assert backend.stats["truncated"] > before.get("truncated", 0)  # random weights rarely emit <|im_end|>


def test_bad_prompts_are_rejected_with_their_index(backend):
    with pytest.raises(ValueError, match="prompt 1"):
        generate_answers([PROMPTS[0], [{"content": "no role"}]], backend, temperature=0.0, max_new_tokens=4)


def test_mt_bench_answers_in_fastchat_format_with_two_turns(backend, tmp_path):
    bench = load_mt_bench()
    questions = select_questions(bench.questions, question_ids=(81, 111))  # writing samples, math is greedy
    path = answer_benchmark("mt_bench", bench, questions, backend, tmp_path, "tiny", max_new_tokens=6, n=2)
    assert path == tmp_path / "answers" / "mt_bench" / "tiny.jsonl"
    answers = load_fastchat_answers(path)  # our own loader validates FastChat's format
    assert sorted(answers) == [81, 111] and all(len(turns) == 2 for turns in answers.values())
    stats = (path.with_suffix(".stats.json")).read_text()
    assert '"questions": 2' in stats and '"truncated"' in stats
