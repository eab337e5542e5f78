"""Which judge to call and how: an OpenAI-compatible endpoint configured from the environment.

    JUDGE_BASE_URL  (or OPENAI_BASE_URL)  e.g. https://api.openai.com/v1, http://127.0.0.1:8000/v1
    JUDGE_MODEL                           e.g. gpt-4, or the model name the server knows
    JUDGE_API_KEY   (or OPENAI_API_KEY)   never written to any file

`JudgeConfig`'s fields are the one mapping of the judge options: the same names are the keys of
a stage's `judge:` section and of `JudgeConfig.from_mapping`, and a field's `cli` metadata is its
command-line flag (`add_judge_arguments` / `judge_values`), so no other module lists them.
`AfterTrainingOptions`' fields are the other keys of that section (what to answer, and how).

`JudgeSection.parse(section)` reads a stage's whole `judge:` section into both, once, when the recipe
is parsed (`align.training.config.KlearArguments.judge_section`): a typo fails before any data is read.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace

OPENAI_BASE_URL = "https://api.openai.com/v1"
BENCHMARKS = ("mt_bench", "alignbench")
# Engines that answer from a local model directory: name -> "module:class", imported on use
# (align.judging.answers.local_backend). Each class takes (model_dir, *, batch_size) and implements
# AnswerBackend. "auto" is vLLM when it is installed, else transformers; $ALIGN_ANSWER_ENGINE
# (transformers or vllm) forces one.
LOCAL_ENGINES = {
    "auto": "align.judging.answers:auto_backend",
    "transformers": "align.judging.answers:TransformersBackend",
    "vllm": "align.serve.vllm_backend:VLLMBackend",
}


class JudgeConfigError(ValueError):
    pass


def check_base_url(url: str, what: str = "judge config: base_url") -> str:
    """An http(s) URL with a host, else JudgeConfigError (a typo fails now, not after retries)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise JudgeConfigError(f"{what} must be an http:// or https:// URL with a host, got {url!r}")
    return url


def _option(default: object, help: str, flag: str | None = None, type: type | None = None):
    """A JudgeConfig field; `flag` makes it a command-line option of every judging command."""
    return field(default=default, metadata={"help": help, "flag": flag, "type": type})


@dataclass(frozen=True)
class JudgeConfig:
    base_url: str = field(metadata={"help": "OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1",
                                    "flag": "--judge-base-url", "type": str})
    model: str = field(metadata={"help": "judge model name as the endpoint knows it, e.g. gpt-4",
                                 "flag": "--judge-model", "type": str})
    api_key: str | None = field(default=None, repr=False, metadata={"help": "from JUDGE_API_KEY / OPENAI_API_KEY"})
    concurrency: int = _option(8, "judge calls in flight (default 8)", "--concurrency", int)
    repeats: int = _option(1, "judge each item n times, take the median (default 1)", "--repeats", int)
    parse_retries: int = _option(2, "extra calls for an unparseable judgment (default 2)", "--parse-retries", int)
    # None: as upstream (FastChat sends 2048; THUDM sends no limit)
    max_tokens: int | None = _option(None, "judge max_tokens (default: FastChat 2048, THUDM none)",
                                     "--judge-max-tokens", int)
    timeout_s: float = _option(600.0, "seconds to wait for one judge response (default 600)", "--timeout-s", float)
    api_retries: int = _option(6, "retries of a judge request on 429, 408, 409, 5xx, timeouts and connection "
                                  "errors, with backoff (default 6)", "--api-retries", int)
    backoff_base_s: float = _option(1.0, "first backoff delay (doubles per retry, full jitter)", type=float)
    backoff_max_s: float = _option(60.0, "longest backoff delay", type=float)

    def __post_init__(self) -> None:
        check_base_url(self.base_url)
        for option in _TYPED:  # a list or a string where a number belongs fails here, in one line
            value, kind = getattr(self, option.name), option.metadata["type"]
            accepted = (int, float) if kind is float else kind
            if value is not None and (isinstance(value, bool) or not isinstance(value, accepted)):
                what = {float: "a number", int: "an integer", str: "a string"}[kind]
                raise JudgeConfigError(f"judge config: {option.name} must be {what}, got {value!r}")
        for name in ("concurrency", "repeats"):
            if getattr(self, name) < 1:
                raise JudgeConfigError(f"judge config: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("parse_retries", "api_retries"):
            if getattr(self, name) < 0:
                raise JudgeConfigError(f"judge config: {name} must be >= 0, got {getattr(self, name)}")
        if not self.timeout_s > 0:
            raise JudgeConfigError(f"judge config: timeout_s must be > 0, got {self.timeout_s}")
        for name in ("backoff_base_s", "backoff_max_s"):
            if not getattr(self, name) >= 0:
                raise JudgeConfigError(f"judge config: {name} must be >= 0, got {getattr(self, name)}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise JudgeConfigError(f"judge config: max_tokens must be >= 1, got {self.max_tokens}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, object], env: Mapping[str, str] | None = None) -> JudgeConfig:
        """Explicit values win over the environment; unknown keys are an error, not ignored."""
        env = os.environ if env is None else env
        unknown = sorted(set(values) - JUDGE_KEYS)
        if unknown:
            raise JudgeConfigError(f"judge config: unknown key(s) {unknown}; known: {sorted(JUDGE_KEYS)}")
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


JUDGE_KEYS = frozenset(f.name for f in fields(JudgeConfig))
_TYPED = [f for f in fields(JudgeConfig) if f.metadata.get("type")]
_FLAGGED = [f for f in _TYPED if f.metadata.get("flag")]


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    """The flagged JudgeConfig fields as options (dest `judge_<field>`), defaults from the environment."""
    group = parser.add_argument_group("judge endpoint (defaults from the environment)")
    for option in _FLAGGED:
        group.add_argument(option.metadata["flag"], dest=f"judge_{option.name}", type=option.metadata["type"],
                           help=option.metadata["help"])


def judge_values(args: argparse.Namespace) -> dict:
    """The judge options given on the command line, as JudgeConfig keys (None: not given)."""
    return {option.name: getattr(args, f"judge_{option.name}") for option in _FLAGGED}


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


@dataclass(frozen=True)
class AfterTrainingOptions:
    """What to answer and how; the judge itself is a JudgeConfig."""

    enabled: bool = True  # false skips judging
    benchmarks: tuple[str, ...] | None = None  # default: mt_bench, plus alignbench when its data is found
    questions_per_category: int | None = None  # e.g. 1 for a demo (the report labels the subset)
    max_new_tokens: int | None = None  # answer length (default 1024 MT-Bench, 2048 AlignBench)
    batch_size: int = 8  # local generation batch
    answer_engine: str = "auto"  # a key of LOCAL_ENGINES; auto = vLLM when installed, else transformers
    tensor_parallel_size: int | None = None  # vLLM engine processes (default: every visible GPU; 1 on CPU)
    answer_base_url: str | None = None  # an endpoint serving the saved model answers instead (key: ENDPOINT_API_KEY)
    answer_model: str | None = None  # the model's name there (default: the model directory's absolute path)
    mode: str = "single"  # MT-Bench: single, pairwise or both
    baseline_answers: str | None = None  # FastChat answer file of the baseline (pairwise)
    alignbench_dir: str | None = None  # see align.data.benchmarks.resolve_alignbench_dir
    model_name: str | None = None  # name in the report (default: the model directory's name)

    def __post_init__(self) -> None:
        if self.mode not in ("single", "pairwise", "both"):
            raise ValueError(f"judge config: mode must be single, pairwise or both, got {self.mode!r}")
        if self.mode != "single" and not self.baseline_answers:
            raise ValueError("judge config: pairwise mode needs baseline_answers (a FastChat answer file)")
        unknown = sorted(set(self.benchmarks or ()) - set(BENCHMARKS))
        if unknown:
            raise ValueError(f"judge config: unknown benchmark(s) {unknown}; known: {sorted(BENCHMARKS)}")
        if self.answer_engine not in LOCAL_ENGINES:
            raise ValueError(f"judge config: unknown answer_engine {self.answer_engine!r}; known: {sorted(LOCAL_ENGINES)}")
        if self.answer_base_url is not None:
            check_base_url(self.answer_base_url, "judge config: answer_base_url")
        for name in ("questions_per_category", "max_new_tokens", "batch_size", "tensor_parallel_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"judge config: {name} must be an integer >= 1, got {value!r}")
        if self.tensor_parallel_size is not None:
            if self.answer_base_url is not None:
                raise ValueError("judge config: tensor_parallel_size sizes the local vLLM engine, but answers come "
                                 f"from answer_base_url ({self.answer_base_url}); give one of the two")
            if self.answer_engine == "transformers" and self.tensor_parallel_size > 1:
                raise ValueError("judge config: tensor_parallel_size > 1 needs answer_engine vllm (or auto with vLLM "
                                 "installed); transformers answers on one device")


OPTION_KEYS = frozenset(f.name for f in fields(AfterTrainingOptions))


@dataclass(frozen=True)
class JudgeSection:
    """A stage's `judge:` section (or `evaluate`'s options), parsed once: `options` (what to answer and
    how) and `endpoint`, the JudgeConfig values it names (the environment supplies the rest, and the key)."""

    options: AfterTrainingOptions = field(default_factory=AfterTrainingOptions)
    endpoint: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def parse(cls, section: Mapping[str, object] | str | None, env: Mapping[str, str] | None = None) -> JudgeSection:
        """A mapping, or its JSON text (from a command line). Unknown keys, bad values and a half-named
        endpoint are errors now, so that typos do not pass silently or fail after training."""
        if isinstance(section, str):
            try:
                section = json.loads(section)
            except json.JSONDecodeError as err:
                raise ValueError(f"judge config: not a JSON object ({err.msg}): {section!r}") from None
        if section is not None and not isinstance(section, Mapping):
            raise ValueError(f"judge config: expected a mapping, got {type(section).__name__}")
        unknown = sorted(set(section or {}) - OPTION_KEYS - JUDGE_KEYS)
        if unknown:
            raise ValueError(f"judge config: unknown key(s) {unknown}; known: {sorted(OPTION_KEYS | JUDGE_KEYS)}")
        given = {key: value for key, value in (section or {}).items() if value is not None}
        options = {key: value for key, value in given.items() if key in OPTION_KEYS}
        if options.get("benchmarks") is not None:
            options["benchmarks"] = tuple(options["benchmarks"])
        try:
            parsed = cls(AfterTrainingOptions(**options), {k: v for k, v in given.items() if k in JUDGE_KEYS})
        except TypeError as err:  # e.g. a list where a number belongs
            raise ValueError(f"judge config: {err}") from None
        if parsed.enabled:
            parsed.judge_config(env)  # the endpoint's values are checked now (not when training ends)
        return parsed

    @property
    def enabled(self) -> bool:
        return self.options.enabled

    def judge_config(self, env: Mapping[str, str] | None = None) -> JudgeConfig | None:
        """The judge endpoint named by the section or the environment; None: the model judges itself."""
        if not judge_configured(self.endpoint, env):
            return None
        return JudgeConfig.from_mapping(self.endpoint, env)

    def describe(self) -> str:
        if not self.enabled:
            return "judging disabled"
        judge = self.judge_config()
        if judge is None:
            return ("NO JUDGE CONFIGURED: the model will judge its own answers, through a local transformers serve, "
                    "so its scores are meaningless (JUDGE_BASE_URL and JUDGE_MODEL name a real judge)")
        return f"judge {judge.model} at {judge.base_url}"
