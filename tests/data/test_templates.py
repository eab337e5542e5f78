"""Assistant-only masks with Qwen's real tokenizer and templates without generation markers, checked token by token.

The expected ids and masks are written out segment by segment: what the template renders around each
answer (mask 0) and the answer's content plus its end-of-turn token (mask 1)."""

import json

import pytest
from trl.chat_template_utils import (
    get_training_chat_template,
    qwen2_5_chat_template,
    qwen3_chat_template,
)

from align.data.chat import build_sft_dataset
from align.data.sources import DataError, DataReport, Source
from align.data.templates import AssistantMasker, TemplateError
from tests.data.chat_templates import COUNTS_MESSAGES, LLAMA2_STYLE, NO_END_OF_TURN, PLAIN

CONVERSATION = [
    {"role": "system", "content": "你是一个乐于助人的助手。"},
    {"role": "user", "content": "法国的首都是哪里？"},
    {"role": "assistant", "content": "巴黎。"},
    {"role": "user", "content": "And Japan's?"},
    {"role": "assistant", "content": "Tokyo, since 1869."},
]
THINK = "<think>\n\n</think>\n\n"


@pytest.fixture
def tokenizer(qwen_tokenizer):
    shipped = qwen_tokenizer.chat_template
    yield qwen_tokenizer
    qwen_tokenizer.chat_template = shipped


def expected(tokenizer, segments):
    """Token ids and mask of `[(text, masked), ...]` tokenised piece by piece."""
    ids, mask = [], []
    for text, masked in segments:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        mask += [int(masked)] * len(piece)
    return ids, mask


def encode(tokenizer, template, messages=CONVERSATION):
    tokenizer.chat_template = template
    masker = AssistantMasker(tokenizer)
    return masker.template.origin, masker.encode([messages])[0]


def chatml_segments(think_first: bool, think_last: bool):
    return [
        ("<|im_start|>system\n你是一个乐于助人的助手。<|im_end|>\n<|im_start|>user\n法国的首都是哪里？<|im_end|>\n"
         "<|im_start|>assistant\n" + (THINK if think_first else ""), 0),
        ("巴黎。<|im_end|>", 1),
        ("\n<|im_start|>user\nAnd Japan's?<|im_end|>\n<|im_start|>assistant\n" + (THINK if think_last else ""), 0),
        ("Tokyo, since 1869.<|im_end|>", 1),
        ("\n", 0),
    ]


def test_qwen2_5_official_template_through_trl(tokenizer):
    origin, got = encode(tokenizer, qwen2_5_chat_template)
    assert origin == "TRL training template"
    ids, mask = expected(tokenizer, chatml_segments(think_first=False, think_last=False))
    assert got["input_ids"] == ids and got["assistant_masks"] == mask


def test_qwen2_5_mask_is_trls_generation_span_without_the_newlines_around_it(tokenizer):
    """TRL's training template marks '\\n' + content + '<|im_end|>\\n'; we keep content + '<|im_end|>'."""
    _, ours = encode(tokenizer, qwen2_5_chat_template)
    trl = tokenizer.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                        chat_template=get_training_chat_template(tokenizer))
    assert trl["input_ids"] == ours["input_ids"]
    extra = [tokenizer.decode([t]) for t, a, b in zip(ours["input_ids"], trl["assistant_masks"], ours["assistant_masks"])
             if a and not b]
    assert extra == ["\n"] * 4
    assert not any(b and not a for a, b in zip(trl["assistant_masks"], ours["assistant_masks"]))


def test_qwen3_official_template_through_trl_renders_and_skips_the_empty_think_block(tokenizer):
    """TRL's Qwen3 training template puts the empty think block in every assistant turn; it is not learnt."""
    origin, got = encode(tokenizer, qwen3_chat_template)
    assert origin == "TRL training template"
    ids, mask = expected(tokenizer, chatml_segments(think_first=True, think_last=True))
    assert got["input_ids"] == ids and got["assistant_masks"] == mask


def test_qwen3_template_shipped_with_the_tokenizer_turn_by_turn(tokenizer):
    """An older Qwen3 template TRL does not know: rendered as is (think block in the last turn only), not learnt."""
    origin, got = encode(tokenizer, tokenizer.chat_template)
    assert origin == "turn by turn"
    ids, mask = expected(tokenizer, chatml_segments(think_first=False, think_last=True))
    assert got["input_ids"] == ids and got["assistant_masks"] == mask


def test_plain_template_masks_the_answer_and_the_eos(tokenizer):
    origin, got = encode(tokenizer, PLAIN)
    assert origin == "turn by turn"
    ids, mask = expected(tokenizer, [
        ("你是一个乐于助人的助手。\n\n### User:\n法国的首都是哪里？\n\n### Assistant:\n", 0),
        ("巴黎。<|im_end|>", 1),
        ("\n\n### User:\nAnd Japan's?\n\n### Assistant:\n", 0),
        ("Tokyo, since 1869.<|im_end|>", 1),
        ("\n\n", 0),
    ])
    assert got["input_ids"] == ids and got["assistant_masks"] == mask


def test_llama2_style_template_masks_from_the_answer_to_the_eos(tokenizer):
    """'[/INST] Paris. <eos>': the space before the answer shares the token ' Paris' with it, and a token
    with any character of the answer is masked."""
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": "Paris."}]
    origin, got = encode(tokenizer, LLAMA2_STYLE, messages)
    assert origin == "turn by turn"
    ids, mask = expected(tokenizer, [
        ("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nCapital of France? [/INST]", 0),
        (" Paris. <|im_end|>", 1),
    ])
    assert got["input_ids"] == ids and got["assistant_masks"] == mask


def test_an_answer_that_looks_like_the_template_scaffolding_is_found_where_it_is(tokenizer):
    messages = [{"role": "user", "content": "Say think."}, {"role": "assistant", "content": "think"}]
    _, got = encode(tokenizer, qwen3_chat_template, messages)
    learnt = [tokenizer.decode([t]) for t, m in zip(got["input_ids"], got["assistant_masks"]) if m]
    assert learnt == ["think", "<|im_end|>"]


@pytest.mark.parametrize("template, message", [
    (COUNTS_MESSAGES, "not prefix-preserving: messages[:2] rendered with add_generation_prompt=True differs"),
    (NO_END_OF_TURN, "puts no special end-of-turn token after messages[2]"),
])
def test_unusable_templates_are_refused_naming_the_row_and_the_problem(tmp_path, tokenizer, template, message):
    tokenizer.chat_template = template
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": CONVERSATION}) + "\n")
    with pytest.raises(DataError) as err:
        build_sft_dataset([Source(str(path))], tokenizer, None, DataReport())
    assert f"{path}:1: field 'messages': the chat template " in str(err.value) and message in str(err.value)


def test_a_rewritten_answer_is_refused(tokenizer):
    """Qwen3's template moves a <think> block out of the content: the answer is not rendered verbatim."""
    messages = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>add</think>4"}]
    tokenizer.chat_template = qwen3_chat_template
    with pytest.raises(TemplateError, match=r"does not render messages\[1\].content verbatim"):
        AssistantMasker(tokenizer).encode([messages])
