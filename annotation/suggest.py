"""LLM-judge suggestions for `push --judge`: `align.judging.pairwise` judges each pair as shown."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from annotation.errors import AnnotationError
from annotation.logic.pairs import PairRecord
from annotation.push import Suggestion


def judge_suggester(
    model: Optional[str] = None, base_url: Optional[str] = None, cache_dir: Optional[str] = None
) -> Callable[[Sequence[PairRecord]], dict]:
    """A `suggest` for `push_pairs`: {pair id: Suggestion} for every pair the judge gave a verdict
    on. The judge sees A and B as the annotators will (and, inside judge_pair, also swapped, to
    cancel its own position bias); pairs it could not judge get no suggestion and are counted."""
    from align.judging.config import JudgeConfig, JudgeConfigError
    from align.judging.pairwise import PairVerdict, judge_pairs

    try:
        config = JudgeConfig.from_mapping({"model": model, "base_url": base_url})
    except JudgeConfigError as error:
        raise AnnotationError(f"--judge: {error}") from error

    def suggest(pairs: Sequence[PairRecord]) -> dict:
        items = [([dict(m) for m in p.prompt], p.answer_a.content, p.answer_b.content) for p in pairs]
        verdicts = judge_pairs(items, judge=config, cache_dir=cache_dir)
        return {
            pair.id: Suggestion(value=verdict.winner, score=verdict.confidence, agent=verdict.judge_model)
            for pair, verdict in zip(pairs, verdicts)
            if isinstance(verdict, PairVerdict)
        }

    return suggest
