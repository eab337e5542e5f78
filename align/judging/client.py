"""All judge-API calls: an OpenAI-compatible chat client with backoff and a content-addressed cache.

The cache key is the SHA-256 of the request (model, messages, temperature, max_tokens) plus a
sample index, so repeated judging (n samples of the same request) and parse retries each get
their own entry. A call whose response is in the cache is never made again: an interrupted run
resumes where it stopped and a re-run costs nothing. Responses are cached whether or not they
parse (a paid call is a paid call); API errors are not cached, so a re-run tries them again. A
cache file that cannot be read back (not JSON, or without a response text) is counted, logged
and requested again, then overwritten.

An endpoint that cannot serve the run at all stops it at once with the reason, rather than
failing every item after minutes of retries: `JudgeClient.preflight` makes one request before
judging, and a refused connection, an unknown host, a timeout or HTTP 401/403 raise
`JudgeEndpointError` ("could not connect to http://... (connection refused)"). So does an endpoint
that has answered no request at all when one request has used up its retries on server errors
("... failed every request: HTTP 500 ..."), or that never answers within `timeout_s` ("no answer
from ... within 5 s"). A request still unanswered after `slow_request_s(timeout)` is logged with
what it waits for (URL, model, timeout, attempt n of m).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import openai

from .config import JudgeConfig

logger = logging.getLogger("align.judging")
Messages = list[dict[str, str]]
RETRYABLE_STATUS = {408, 409, 429}


def retryable_status(status: int) -> bool:
    """An HTTP status worth another attempt: a timeout, a conflict, rate limiting, or any server error."""
    return status in RETRYABLE_STATUS or status >= 500
FATAL_STATUS = {401: "authentication failed: check JUDGE_API_KEY / OPENAI_API_KEY", 403: "permission denied"}
PREFLIGHT_TIMEOUT_S = 10.0
SLOW_REQUEST_S = 30.0  # a request unanswered this long is logged (sooner when the timeout is shorter)


class JudgeAPIError(RuntimeError):
    """The endpoint failed for good: a non-retryable status, or retries exhausted (`status`, `body`:
    the last HTTP answer's, None for connection errors)."""

    def __init__(self, message: str, status: int | None = None, body: str | None = None):
        super().__init__(message)
        self.status = status
        self.body = body


class JudgeEndpointError(JudgeAPIError):
    """The endpoint cannot serve this run at all (unreachable, or it refuses our credentials): stop."""


def connection_problem(err: openai.APIConnectionError) -> str:
    """A short reason from the error the HTTP library raised underneath."""
    if isinstance(err, openai.APITimeoutError):
        return "timed out"
    detail = str(err.__cause__ or err)
    lowered = detail.lower()
    if "refused" in lowered:
        return "connection refused"
    if "name or service not known" in lowered or "nodename nor servname" in lowered or "name resolution" in lowered:
        return f"host name not found: {detail}"
    return detail


def body_start(error: openai.APIStatusError, limit: int = 120) -> str:
    """The start of an error response's body, on one line."""
    text = error.response.text if error.response is not None else str(error.body)
    return " ".join(text.split())[:limit]


def slow_request_s(timeout_s: float) -> float:
    return min(SLOW_REQUEST_S, timeout_s / 2)


def fatal_status_error(base_url: object, status: int, message: str) -> JudgeEndpointError:
    return JudgeEndpointError(f"HTTP {status} from {base_url}: {FATAL_STATUS[status]} ({message})")


def request_key(request: dict, sample: object) -> str:
    canonical = json.dumps({"request": request, "sample": sample}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class JudgeCache:
    """One JSON file per judge call, at DIR/ab/abcdef....json; writes are atomic (tmp + rename)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> tuple[dict | None, bool]:
        """(record, corrupt): (None, False) when absent; (None, True) when the file cannot be used."""
        path = self._path(key)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None, False
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = None  # writes are atomic, so this is damage from outside: ask again
        response = record.get("response") if isinstance(record, dict) else None
        if not (isinstance(response, dict) and isinstance(response.get("content"), str)):
            logger.warning("judge cache: %s is not a cached response; requesting it again", path)
            return None, True
        return record, False

    def put(self, key: str, record: dict) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, ensure_ascii=False)
        os.replace(tmp, path)

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*/*.json")) if self.directory.is_dir() else 0


def _retry_after_seconds(error: openai.APIStatusError) -> float | None:
    value = error.response.headers.get("retry-after") if error.response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def create_with_backoff(
    client: openai.OpenAI,
    request: dict,
    *,
    retries: int,
    base_s: float,
    max_s: float,
    on_retry: Callable[[str], None] = lambda reason: None,
    sleep: Callable[[float], None] = time.sleep,
):
    """`chat.completions.create` retried with exponential backoff and full jitter (Retry-After wins)
    on rate limits, timeouts, conflicts, server errors and connection failures. An attempt still
    unanswered after `slow_request_s(client.timeout)` is logged with what it waits for."""
    timeout_s, where = float(client.timeout), str(client.base_url).rstrip("/")
    for attempt in range(retries + 1):
        slow = threading.Timer(slow_request_s(timeout_s), logger.warning, args=(
            "waiting for %s (model %s): no answer yet, timeout %.0f s, attempt %d of %d",
            where, request.get("model"), timeout_s, attempt + 1, retries + 1))
        slow.daemon = True
        slow.start()
        try:
            return client.chat.completions.create(**request)
        except openai.APIStatusError as err:
            if err.status_code in FATAL_STATUS:
                raise fatal_status_error(where, err.status_code, err.message) from None
            retryable = retryable_status(err.status_code)
            if not retryable or attempt == retries:
                raise JudgeAPIError(f"HTTP {err.status_code} from {where}: {err.message}",
                                    status=err.status_code, body=body_start(err)) from None
            delay = _retry_after_seconds(err)
            reason = f"HTTP {err.status_code}"
        except openai.APITimeoutError:
            if attempt == retries:
                raise JudgeEndpointError(
                    f"no answer from {where} (model {request.get('model')}) within {timeout_s:g} s, "
                    f"in {retries + 1} attempt(s) (timeout_s / --timeout-s, api_retries / --api-retries)"
                ) from None
            delay, reason = None, "timeout"
        except openai.APIConnectionError as err:
            if attempt == retries:
                raise JudgeEndpointError(
                    f"could not connect to {where} ({connection_problem(err)}) in {retries + 1} attempt(s)"
                ) from None
            delay, reason = None, type(err).__name__
        finally:
            slow.cancel()
        if delay is None:
            delay = random.uniform(0, min(max_s, base_s * 2**attempt))
        on_retry(reason)
        sleep(delay)
    raise AssertionError("unreachable")


def make_openai_client(base_url: str, api_key: str | None, timeout_s: float) -> openai.OpenAI:
    # The SDK's own retries are off: backoff happens here, where it is counted.
    return openai.OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout_s, max_retries=0)


@dataclass(frozen=True)
class CallResult:
    content: str
    finish_reason: str | None
    cached: bool
    key: str


class JudgeClient:
    """Thread-safe: judgments.run_tasks calls `complete` from a pool of `config.concurrency` threads."""

    def __init__(self, config: JudgeConfig, cache: JudgeCache | None = None):
        self.config = config
        self.cache = cache
        # Backoff waits on this event: once the endpoint is known dead, waiting threads stop at once.
        self._stopped = threading.Event()
        self._openai = make_openai_client(config.base_url, config.api_key, config.timeout_s)
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self.stats: Counter[str] = Counter()  # api_calls, cache_hits, cache_corrupt, api_retries, api_errors
        self._answered = threading.Event()  # set by the first response: the endpoint works, at least sometimes

    def preflight(self) -> str:
        """One cheap request (GET /models) before judging. Raises JudgeEndpointError when the endpoint
        is unreachable or refuses the credentials; returns what was learnt otherwise."""
        where = self.config.base_url
        # A client of its own: a server that fails this request may drop the connection, which the
        # judge calls must not inherit from a shared pool.
        wait_s = min(PREFLIGHT_TIMEOUT_S, self.config.timeout_s)
        quick = make_openai_client(where, self.config.api_key, wait_s)
        try:
            listed = [model.id for model in quick.models.list().data]
        except openai.APIStatusError as err:
            if err.status_code in FATAL_STATUS:
                raise fatal_status_error(where, err.status_code, err.message) from None
            return f"{where} is up (GET /models answered HTTP {err.status_code}; not every server lists models)"
        except openai.APITimeoutError:
            raise JudgeEndpointError(f"no answer from {where} within {wait_s:g} s (GET /models)") from None
        except openai.APIConnectionError as err:
            raise JudgeEndpointError(f"could not connect to {where} ({connection_problem(err)})") from None
        finally:
            quick.close()
        if self.config.model not in listed:
            shown = ", ".join(listed[:10]) + (" ..." if len(listed) > 10 else "")
            return f"{where} is up but does not list the judge model {self.config.model!r} (it lists: {shown or 'none'})"
        return f"{where} is up and serves {self.config.model}"

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def complete(self, messages: Messages, *, max_tokens: int | None, sample: object = 0) -> CallResult:
        request: dict = {"model": self.config.model, "messages": messages, "temperature": 0}
        if max_tokens is not None:
            request["max_tokens"] = max_tokens
        key = request_key(request, sample)
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # two identical requests in flight (e.g. two models, same answer) make one call
            return self._complete(request, key, sample)

    def _complete(self, request: dict, key: str, sample: object) -> CallResult:
        if self.cache is not None:
            hit, corrupt = self.cache.get(key)
            if hit is not None:
                self._count("cache_hits")
                return CallResult(hit["response"]["content"], hit["response"].get("finish_reason"), True, key)
            if corrupt:
                self._count("cache_corrupt")
        self._count("api_calls")
        try:
            response = create_with_backoff(
                self._openai,
                request,
                retries=0 if self._stopped.is_set() else self.config.api_retries,
                base_s=self.config.backoff_base_s,
                max_s=self.config.backoff_max_s,
                on_retry=lambda reason: self._count("api_retries"),
                sleep=self._stopped.wait,
            )
        except JudgeEndpointError:
            self._count("api_errors")
            self._stopped.set()
            raise
        except JudgeAPIError as err:
            self._count("api_errors")
            retried = err.status is not None and retryable_status(err.status)
            if not retried or self._answered.is_set():
                raise  # this request's own failure (e.g. 400), or an endpoint that works at times
            self._stopped.set()
            with self._lock:
                attempts = self.stats["api_calls"] + self.stats["api_retries"]
            raise JudgeEndpointError(
                f"{self.config.base_url} failed every request: no answer in {attempts} attempt(s) so far "
                f"({self.config.api_retries + 1} per request), the last HTTP {err.status}, its body starting {err.body!r}"
            ) from None
        if not hasattr(response, "choices"):  # the SDK hands back the body as text when it is not JSON
            self._count("api_errors")
            self._stopped.set()
            body = " ".join(str(response).split())[:80]
            raise JudgeEndpointError(f"{self.config.base_url} answered HTTP 200 with a body that is not an OpenAI chat "
                                     f"completion (it starts {body!r}); is base_url the API's, ending in /v1?")
        if not response.choices:
            self._count("api_errors")
            raise JudgeAPIError(f"{self.config.base_url} answered with no choices")
        self._answered.set()
        choice = response.choices[0]
        content = choice.message.content or ""
        if self.cache is not None:
            self.cache.put(
                key,
                {
                    "request": request,
                    "sample": sample,
                    "response": {"content": content, "finish_reason": choice.finish_reason, "model": response.model},
                    "created": time.time(),
                },
            )
        return CallResult(content, choice.finish_reason, False, key)
