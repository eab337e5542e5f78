"""The Argilla dataset made for pairwise preference: its fields, questions, metadata, guidelines.

The names are an interface (`pull`, the demo and other tools rely on them); titles are free.
"""

from __future__ import annotations

from typing import Sequence

PROMPT_FIELD = "prompt"
ANSWER_FIELDS = ("answer_a", "answer_b")
PREFERENCE = "preference"
LABELS = {"a": "A is better", "b": "B is better", "tie": "Tie: equally good", "both_bad": "Both are bad"}
STRENGTH = "strength"
STRENGTH_VALUES = [1, 2, 3]
RATIONALE = "rationale"
DEFAULT_ASPECTS = ("helpfulness", "correctness")
ASPECT_VALUES = [1, 2, 3, 4, 5]
# Metadata properties (filters in the UI): source and category shown to annotators, the models
# shown to owners and admins only. Which model wrote A and which B (model_a, model_b) and the
# prompt id ride along as extra metadata, which Argilla shows to owners and admins only, and which
# costs nothing on upload (argilla-server validates each property of each record, slowly).
VISIBLE_METADATA = ("source", "category")
HIDDEN_METADATA = ("models",)

GUIDELINES = """\
## Which answer is better?

You see a conversation and two candidate replies to its last user message, **A** and **B**.
Read both, then choose:

- **A is better** / **B is better**: the one you would rather receive. Judge helpfulness,
  correctness and honesty first; harmlessness always wins over helpfulness; style and length
  only break near-ties. A shorter correct answer beats a longer one with an error.
- **Tie**: both are equally good (or have equally small problems).
- **Both are bad**: neither is acceptable (wrong, harmful, off-topic or not an answer).

The order of A and B is random; the models' names are hidden on purpose. If a suggestion from
an AI judge is shown, treat it as a hint to check, never as the answer.

Optionally, say how strong your preference is (1 slight, 2 clear, 3 decisive), rate each answer
per aspect (1 poor to 5 excellent), and write a short rationale. Submit when done; **Discard**
a record you cannot judge (for example, one outside your expertise).
"""


def aspect_question_names(aspects: Sequence[str]) -> list:
    return [f"{aspect}_{side}" for aspect in aspects for side in ("a", "b")]


def preference_settings(min_submitted: int = 1, aspects: Sequence[str] = DEFAULT_ASPECTS):
    """`argilla.Settings` of a pairwise preference dataset."""
    import argilla as rg

    questions = [
        rg.LabelQuestion(name=PREFERENCE, title="Which answer is better?", labels=dict(LABELS), required=True),
        rg.RatingQuestion(
            name=STRENGTH,
            title="How strong is your preference? (1 slight, 2 clear, 3 decisive)",
            values=list(STRENGTH_VALUES),
            required=False,
        ),
    ]
    for aspect in aspects:
        for side in ("a", "b"):
            questions.append(
                rg.RatingQuestion(
                    name=f"{aspect}_{side}",
                    title=f"{aspect.capitalize()} of answer {side.upper()} (1 poor to 5 excellent)",
                    values=list(ASPECT_VALUES),
                    required=False,
                )
            )
    questions.append(rg.TextQuestion(name=RATIONALE, title="Why? (optional)", required=False))
    metadata = [rg.TermsMetadataProperty(name=name, title=name.capitalize()) for name in VISIBLE_METADATA]
    metadata += [rg.TermsMetadataProperty(name=name, visible_for_annotators=False) for name in HIDDEN_METADATA]
    return rg.Settings(
        guidelines=GUIDELINES,
        fields=[
            rg.ChatField(name=PROMPT_FIELD, title="Conversation so far", use_markdown=True),
            rg.TextField(name="answer_a", title="Answer A", use_markdown=True),
            rg.TextField(name="answer_b", title="Answer B", use_markdown=True),
        ],
        questions=questions,
        metadata=metadata,
        allow_extra_metadata=True,
        distribution=rg.TaskDistribution(min_submitted=min_submitted),
    )


MAX_NAME_LENGTH = 200  # argilla-server's limit for dataset names (api/schemas/v1/datasets.py)


def check_name(option: str, name: str) -> None:
    """A dataset or workspace name Argilla accepts, checked before anything is created."""
    from annotation.errors import AnnotationError

    if not name.strip():
        raise AnnotationError(f"{option} is empty: give the dataset a name")
    if len(name) > MAX_NAME_LENGTH:
        raise AnnotationError(f"{option} is {len(name)} characters long; Argilla allows at most {MAX_NAME_LENGTH}")
    if name != name.strip() or any(not ch.isprintable() for ch in name):
        raise AnnotationError(f"{option} {name!r} has leading/trailing spaces or control characters")


def missing_names(field_names: Sequence[str], question_names: Sequence[str]) -> list:
    """What an existing dataset lacks to be one of ours (empty when it is)."""
    wanted_fields = [PROMPT_FIELD, *ANSWER_FIELDS]
    wanted_questions = [PREFERENCE, RATIONALE]
    return [f"field {n!r}" for n in wanted_fields if n not in field_names] + [
        f"question {n!r}" for n in wanted_questions if n not in question_names
    ]
