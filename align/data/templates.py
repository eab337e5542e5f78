"""Assistant-only loss masks for any chat template, with or without `{% generation %}` markers.

Released chat models' templates (Qwen2.5, Qwen3, Llama, ...) carry no generation markers, so
`return_assistant_tokens_mask` marks nothing. The mask is derived here instead:

1. The template to render with: the tokenizer's own when it already has generation markers;
   otherwise TRL's training version of it when TRL knows the template
   (`trl.chat_template_utils.get_training_chat_template`, the template SFTTrainer swaps in for
   `assistant_only_loss`; for Qwen3 it renders the empty `<think>\\n\\n</think>\\n\\n` block in every
   assistant turn, not only the last, which makes it prefix-preserving); otherwise the tokenizer's
   own template unchanged.
2. Turn by turn: for assistant message `i`, the conversation up to it rendered with
   `add_generation_prompt=True` must be a prefix of the whole conversation's rendering (a
   prefix-preserving template); if not, `TemplateError` says where the two renderings part.
3. What is masked, precisely: from the first character of the message's content (its last
   occurrence between the generation prompt and the turn's end) up to and including the turn's
   end-of-turn token, which is the first *special* token after the content (`<|im_end|>` for ChatML,
   the eos token for Llama-2 style). Not masked: the role header (`<|im_start|>assistant\\n`),
   anything the template inserts before the content (Qwen3's empty think block), and anything after
   the end-of-turn token (ChatML's newline). A token is masked when any of its characters is.
   A template that puts no special token after an assistant turn is refused: the model would never
   learn to stop.

The content must appear verbatim (outer whitespace aside) in the rendering; a template that rewrites
it (Qwen3 moving `<think>...</think>` out of the content into its reasoning block) is refused for
that row with the message index named.
"""

from dataclasses import dataclass

from trl.chat_template_utils import get_training_chat_template, has_generation_markers


class TemplateError(ValueError):
    """The chat template cannot give an assistant-only mask for this conversation; says why."""


@dataclass(frozen=True)
class MaskingTemplate:
    """The template rows are rendered with for training, and how it was chosen (for the data card)."""

    template: str
    origin: str  # "generation markers" | "TRL training template" | "turn by turn"


def masking_template(tokenizer) -> MaskingTemplate:
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    if not template:
        raise TemplateError("the tokenizer has no chat template (chat_template in tokenizer_config.json or "
                            "chat_template.jinja): SFT on chat rows needs one")
    if has_generation_markers(template):
        return MaskingTemplate(template, "generation markers")
    try:
        trained = get_training_chat_template(tokenizer)
    except ValueError:  # TRL does not know this template
        return MaskingTemplate(template, "turn by turn")
    return MaskingTemplate(trained or template, "TRL training template")


def _render(tokenizer, template: str, messages: list[dict], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt, chat_template=template
    )


def assistant_spans(tokenizer, template: str, messages: list[dict], special_tokens: list[str]) -> tuple[str, list]:
    """The rendered conversation and, per assistant message, the character span to learn
    (content start, end of the end-of-turn token)."""
    text = _render(tokenizer, template, messages, add_generation_prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, template, messages[:i], add_generation_prompt=True)
        if not text.startswith(prompt):
            at = next((k for k, (a, b) in enumerate(zip(prompt, text)) if a != b), min(len(prompt), len(text)))
            raise TemplateError(
                f"the chat template is not prefix-preserving: messages[:{i}] rendered with add_generation_prompt=True "
                f"differs from the whole conversation's rendering at character {at} "
                f"({prompt[at:at + 30]!r} vs {text[at:at + 30]!r}); assistant-only masks cannot be derived"
            )
        start = len(prompt)
        end_of_turn = _first_special(text, start, special_tokens)
        if end_of_turn is None:
            raise TemplateError(
                f"the chat template puts no special end-of-turn token after messages[{i}] (the assistant's answer): "
                "the model would never learn to stop"
            )
        eot_start, eot_end = end_of_turn
        content = message["content"].strip()
        found = text.rfind(content, start, eot_start)
        if found < 0:
            raise TemplateError(
                f"the chat template does not render messages[{i}].content verbatim before its end-of-turn token "
                "(it rewrites the answer, e.g. moves a <think> block, or the content holds a special token)"
            )
        spans.append((found, eot_end))
    return text, spans


def _first_special(text: str, start: int, special_tokens: list[str]) -> tuple[int, int] | None:
    hits = [(at, at + len(tok)) for tok in special_tokens if (at := text.find(tok, start)) >= 0]
    return min(hits) if hits else None


class AssistantMasker:
    """Token ids and assistant masks for conversations, rendered with `masking_template(tokenizer)`."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.template = masking_template(tokenizer)
        # Longest first, so that a special token that is a prefix of another is not matched inside it.
        self.special_tokens = sorted({t for t in tokenizer.all_special_tokens if t}, key=len, reverse=True)

    def encode(self, conversations: list[list[dict]]) -> list[dict]:
        """`{"input_ids", "assistant_masks"}` per conversation (untruncated)."""
        rendered = [assistant_spans(self.tokenizer, self.template.template, m, self.special_tokens)
                    for m in conversations]
        encoded = self.tokenizer(
            [text for text, _ in rendered], add_special_tokens=False, return_offsets_mapping=True
        )
        out = []
        for (_, spans), ids, offsets in zip(rendered, encoded["input_ids"], encoded["offset_mapping"]):
            out.append({"input_ids": ids, "assistant_masks": token_mask(offsets, spans)})
        return out


def token_mask(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """1 for a token any of whose characters lies in one of the (sorted, disjoint) spans."""
    mask, k = [], 0
    for start, end in offsets:
        while k < len(spans) and spans[k][1] <= start:
            k += 1
        inside = k < len(spans) and end > spans[k][0] and start < spans[k][1] and end > start
        mask.append(int(inside))
    return mask
