"""Which judge to call and how: an OpenAI-compatible endpoint configured from the environment.

    JUDGE_BASE_URL  (or OPENAI_BASE_URL)  e.g. https://api.openai.com/v1, http://127.0.0.1:8000/v1
    JUDGE_MODEL                           e.g. gpt-4, or the model name the server knows
    JUDGE_API_KEY   (or OPENAI_API_KEY)   never written to any file
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace

OPENAI_BASE_URL = "https://api.openai.com/v1"


class JudgeConfigError(ValueError):
    pass


@dataclass(frozen=True)
class JudgeConfig:
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    concurrency: int = 8  # judge calls in flight
    repeats: int = 1  # judge every item n times and take the median (the mode for pairwise verdicts)
    parse_retries: int = 2  # extra calls when a judgment does not parse
    max_tokens: int | None = None  # None: as upstream (FastChat sends 2048; THUDM sends no limit)
    timeout_s: float = 600.0
    api_retries: int = 6  # retries on 429, 408, 409, 5xx and connection errors, with backoff
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("concurrency", "repeats"):
            if getattr(self, name) < 1:
                raise JudgeConfigError(f"judge config: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("parse_retries", "api_retries"):
            if getattr(self, name) < 0:
                raise JudgeConfigError(f"judge config: {name} must be >= 0, got {getattr(self, name)}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise JudgeConfigError(f"judge config: max_tokens must be >= 1, got {self.max_tokens}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object], env: Mapping[str, str] | None = None) -> JudgeConfig:
        """Explicit values win over the environment; unknown keys are an error, not ignored."""
        env = os.environ if env is None else env
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise JudgeConfigError(f"judge config: unknown key(s) {unknown}; known: {sorted(known)}")
        chosen = {key: value for key, value in values.items() if value is not None}
        chosen.setdefault("api_key", env.get("JUDGE_API_KEY") or env.get("OPENAI_API_KEY"))
        base_url = chosen.get("base_url") or env.get("JUDGE_BASE_URL") or env.get("OPENAI_BASE_URL")
        if not base_url and chosen.get("api_key"):
            base_url = OPENAI_BASE_URL
        if not base_url:
            raise JudgeConfigError("no judge endpoint: set JUDGE_BASE_URL (or pass --judge-base-url)")
        model = chosen.get("model") or env.get("JUDGE_MODEL")
        if not model:
            raise JudgeConfigError("no judge model: set JUDGE_MODEL (or pass --judge-model)")
        chosen.update(base_url=str(base_url).rstrip("/"), model=str(model))
        return cls(**chosen)

    def with_overrides(self, **values: object) -> JudgeConfig:
        return replace(self, **{key: value for key, value in values.items() if value is not None})

    def public(self) -> dict:
        """What is recorded with results: everything but the key."""
        values = asdict(self)
        values.pop("api_key")
        return values


def judge_configured(values: Mapping[str, object] | None, env: Mapping[str, str] | None = None) -> bool:
    """Whether a judge endpoint is named, by the given values or by the environment."""
    env = os.environ if env is None else env
    return bool(
        (values or {}).get("base_url")
        or env.get("JUDGE_BASE_URL")
        or env.get("OPENAI_BASE_URL")
        or env.get("JUDGE_API_KEY")
        or env.get("OPENAI_API_KEY")
    )
