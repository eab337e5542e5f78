"""What the embedded search engine answers, as pure functions over plain record documents.

`embedded_engine.py` runs inside argilla-server: it reads a dataset's rows from Argilla's own
database into `RecordDoc`s and turns Argilla's filter and sort objects into the small
dataclasses below; this module decides which records match, in which order, and the counts the
web UI shows (progress, metadata metrics). It imports nothing from argilla_server (it runs in
both virtual environments, and is tested in the project's own), and follows what argilla-server
2.8.0's Elasticsearch engine asks of Elasticsearch (search_engine/commons.py), including:

- a response-status filter for one user: "pending" means that user has no response yet, other
  statuses mean that user has a response with that status (the annotator's queue);
- response filters on a question look for one response (of that user, when given) that matches;
- without an explicit sort, records come in insertion order, or in an order shuffled per user
  (stable for that user) when the search is made for a user, as Elasticsearch's
  `random_score` seeded with the user id does; records missing a sort key come last;
- terms metrics count documents per term, most frequent first, and `total` counts values.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Optional, Sequence, Union


@dataclass(frozen=True)
class ResponseDoc:
    user_id: str
    status: str  # draft | submitted | discarded
    values: dict = field(default_factory=dict)  # question name -> value


@dataclass(frozen=True)
class SuggestionDoc:
    value: Any
    score: Any = None
    agent: Optional[str] = None
    type: Optional[str] = None


@dataclass
class RecordDoc:
    id: str
    external_id: Optional[str]
    status: str  # pending | completed
    inserted_at: datetime
    updated_at: datetime
    text: dict = field(default_factory=dict)  # field name -> its searchable text
    metadata: dict = field(default_factory=dict)
    responses: list = field(default_factory=list)  # [ResponseDoc]
    suggestions: dict = field(default_factory=dict)  # question name -> SuggestionDoc
    vector: Optional[list] = None  # the one vector a similarity search asks about


@dataclass(frozen=True)
class RecordScope:
    property: str  # id | external_id | inserted_at | updated_at | status


@dataclass(frozen=True)
class MetadataScope:
    name: str


@dataclass(frozen=True)
class SuggestionScope:
    question: str
    property: str  # value | score | agent | type


@dataclass(frozen=True)
class ResponseScope:
    question: Optional[str] = None
    property: Optional[str] = None  # "status" when no question
    user_id: Optional[str] = None


Scope = Union[RecordScope, MetadataScope, SuggestionScope, ResponseScope]


@dataclass(frozen=True)
class Terms:
    scope: Scope
    values: tuple


@dataclass(frozen=True)
class Range:
    scope: Scope
    ge: Any = None
    le: Any = None


@dataclass(frozen=True)
class All:
    filters: tuple


Filter = Union[Terms, Range, All]


@dataclass(frozen=True)
class SortKey:
    scope: Scope
    descending: bool = False


@dataclass(frozen=True)
class TextSearch:
    q: str
    field: Optional[str] = None  # None: every text field


# ---------------------------------------------------------------- what a query reads


def parts_needed(flt: Optional[Filter], sort: Sequence[SortKey], text: Optional[TextSearch]) -> set:
    """Which parts of the records a query reads, so the engine loads only those from the database."""
    scopes = [key.scope for key in sort] + list(_filter_scopes(flt))
    needed = {"text"} if text is not None else set()
    for scope in scopes:
        if isinstance(scope, MetadataScope):
            needed.add("metadata")
        elif isinstance(scope, SuggestionScope):
            needed.add("suggestions")
        elif isinstance(scope, ResponseScope):
            needed.add("responses")
    return needed


def _filter_scopes(flt: Optional[Filter]) -> Iterable[Scope]:
    if flt is None:
        return
    if isinstance(flt, All):
        for inner in flt.filters:
            yield from _filter_scopes(inner)
    else:
        yield flt.scope


# ---------------------------------------------------------------- filters


def matches(doc: RecordDoc, flt: Optional[Filter]) -> bool:
    if flt is None:
        return True
    if isinstance(flt, All):
        return all(matches(doc, inner) for inner in flt.filters)
    scope = flt.scope
    if isinstance(scope, ResponseScope):
        return _response_filter_matches(doc, flt)
    return _value_matches(_scope_values(doc, scope), flt)


def _response_filter_matches(doc: RecordDoc, flt: Union[Terms, Range]) -> bool:
    scope: ResponseScope = flt.scope
    mine = [r for r in doc.responses if scope.user_id is None or r.user_id == scope.user_id]
    if scope.question is not None:
        return any(_value_matches(_as_list(r.values.get(scope.question)), flt) for r in mine)
    if scope.property != "status" or not isinstance(flt, Terms):
        raise ValueError(f"cannot filter responses by {scope}")
    wanted = set(flt.values)
    if "pending" in wanted and not mine:
        return True
    return any(r.status in wanted for r in mine)


def _value_matches(values: list, flt: Union[Terms, Range]) -> bool:
    if isinstance(flt, Terms):
        wanted = {str(v) for v in flt.values}
        return any(_term(v) in wanted for v in values)
    return any(_in_range(v, flt.ge, flt.le) for v in values)


def _term(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _in_range(value: Any, ge: Any, le: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, datetime):
        ge, le = _as_datetime(ge), _as_datetime(le)
    elif not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    if ge is not None and value < ge:
        return False
    if le is not None and value > le:
        return False
    return True


def _as_datetime(bound: Any) -> Optional[datetime]:
    """A date bound as Elasticsearch reads one: ISO text, or milliseconds since the epoch.

    Argilla stores naive UTC datetimes, so bounds become naive UTC too."""
    if bound is None:
        return None
    if isinstance(bound, (int, float)):
        moment = datetime.fromtimestamp(bound / 1000, tz=timezone.utc)
    else:
        moment = datetime.fromisoformat(str(bound).replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _scope_values(doc: RecordDoc, scope: Scope) -> list:
    if isinstance(scope, RecordScope):
        return _as_list(getattr(doc, scope.property))
    if isinstance(scope, MetadataScope):
        return _as_list(doc.metadata.get(scope.name))
    if isinstance(scope, SuggestionScope):
        suggestion = doc.suggestions.get(scope.question)
        return [] if suggestion is None else _as_list(getattr(suggestion, scope.property))
    raise ValueError(f"unknown scope {scope}")


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# ---------------------------------------------------------------- text query

_TOKEN = re.compile(r"\w+")
_QUERY_PART = re.compile(r'(-?)"([^"]*)"|(-?)(\S+)')


def tokens(text: str) -> list:
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class QueryTerm:
    words: tuple  # consecutive words to find (one word, or a phrase)
    prefix: bool = False  # the last word is a prefix (`word*`)
    negated: bool = False  # `-word`: records holding it do not match


def parse_text_query(q: str) -> list:
    """The part of Elasticsearch's `simple_query_string` that annotators use: words (all
    required), "quoted phrases", `prefix*` and `-excluded` words or phrases."""
    terms = []
    for negated_phrase, phrase, negated_word, word in _QUERY_PART.findall(q):
        is_phrase = word == ""
        words = tuple(tokens(phrase if is_phrase else word))
        if not words:
            continue
        prefix = not is_phrase and word.endswith("*")
        terms.append(QueryTerm(words, prefix, bool(negated_phrase or negated_word)))
    return terms


def text_score(doc: RecordDoc, text: TextSearch) -> Optional[float]:
    """How well a record answers a text query: the number of times its required words and
    phrases occur; None when it does not match."""
    haystacks = [doc.text.get(text.field, "")] if text.field is not None else list(doc.text.values())
    words = [tokens(h) for h in haystacks]
    score = 0.0
    for term in parse_text_query(text.q):
        hits = sum(_occurrences(ws, term) for ws in words)
        if term.negated and hits:
            return None
        if not term.negated:
            if not hits:
                return None
            score += hits
    return score


def _occurrences(words: list, term: QueryTerm) -> int:
    n = len(term.words)
    count = 0
    for i in range(len(words) - n + 1):
        window = words[i : i + n]
        if term.prefix:
            if window[:-1] == list(term.words[:-1]) and window[-1].startswith(term.words[-1]):
                count += 1
        elif window == list(term.words):
            count += 1
    return count


# ---------------------------------------------------------------- search


def search(
    docs: Sequence[RecordDoc],
    text: Optional[TextSearch] = None,
    flt: Optional[Filter] = None,
    sort: Sequence[SortKey] = (),
    user_id: Optional[str] = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple:
    """Return ([(record id, score or None)], total number of matches) for one page."""
    hits = []
    for doc in docs:
        if not matches(doc, flt):
            continue
        score = text_score(doc, text) if text is not None else None
        if text is not None and score is None:
            continue
        hits.append((doc, score))

    # Python's sort is stable: sort by the tie-breakers first, then by each key from last to first.
    hits.sort(key=lambda hit: (hit[0].inserted_at, hit[0].id))
    if user_id is not None:
        hits.sort(key=lambda hit: _shuffle_key(user_id, hit[0].id))
    if text is not None and not sort:
        hits.sort(key=lambda hit: hit[1], reverse=True)
    for key in reversed(list(sort)):
        hits = _sorted_by(hits, key)

    page = hits[offset : offset + limit]
    scores_apply = text is not None and not sort
    return [(doc.id, score if scores_apply else None) for doc, score in page], len(hits)


def _shuffle_key(user_id: str, record_id: str) -> str:
    return hashlib.sha1(f"{user_id}:{record_id}".encode()).hexdigest()


def _sorted_by(hits: list, key: SortKey) -> list:
    with_value, missing = [], []
    for hit in hits:
        value = _sort_value(hit[0], key.scope)
        (missing if value is None else with_value).append((value, hit))
    with_value.sort(key=lambda pair: pair[0], reverse=key.descending)
    return [hit for _, hit in with_value] + [hit for _, hit in missing]


def _sort_value(doc: RecordDoc, scope: Scope) -> Any:
    if isinstance(scope, ResponseScope):
        name = scope.question
        values = []
        for response in doc.responses:
            if scope.user_id is None or response.user_id == scope.user_id:
                values.extend(_as_list(response.values.get(name) if name else getattr(response, scope.property)))
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if numbers:
            return sum(numbers) / len(numbers)  # Elasticsearch's nested sort, mode "avg"
        return min((str(v) for v in values), default=None)
    values = _scope_values(doc, scope)
    if not values:
        return None
    if all(isinstance(v, (int, float, datetime)) and not isinstance(v, bool) for v in values):
        return min(values)
    return min(str(v) for v in values)


# ---------------------------------------------------------------- progress and metrics


def record_status_counts(docs: Iterable[RecordDoc]) -> dict:
    counts = {"total": 0}
    for doc in docs:
        counts["total"] += 1
        counts[doc.status] = counts.get(doc.status, 0) + 1
    return counts


def user_response_counts(docs: Iterable[RecordDoc], user_id: str) -> dict:
    """One user's responses by status (each record holds at most one response per user)."""
    counts = {"total": 0}
    for doc in docs:
        for response in doc.responses:
            if response.user_id == user_id:
                counts["total"] += 1
                counts[response.status] = counts.get(response.status, 0) + 1
    return counts


def terms_metrics(values_per_doc: Iterable[Any]) -> tuple:
    """(number of values, [(term, number of records holding it)], most frequent first)."""
    total = 0
    doc_counts = {}
    for value in values_per_doc:
        values = _as_list(value)
        total += len(values)
        for term in {_term(v) for v in values}:
            doc_counts[term] = doc_counts.get(term, 0) + 1
    ranked = sorted(doc_counts.items(), key=lambda item: (-item[1], item[0]))
    return total, ranked


def numeric_metrics(values_per_doc: Iterable[Any]) -> tuple:
    numbers = [v for value in values_per_doc for v in _as_list(value) if isinstance(v, (int, float))]
    return (min(numbers), max(numbers)) if numbers else (None, None)


# ---------------------------------------------------------------- vectors


def most_similar(
    docs: Sequence[RecordDoc],
    query: Sequence[float],
    k: int,
    exclude_id: Optional[str] = None,
    threshold: Optional[float] = None,
) -> list:
    """Exact k nearest records by cosine similarity, scored (1 + cosine) / 2 like Elasticsearch."""
    query_norm = math.sqrt(sum(q * q for q in query))
    scored = []
    for doc in docs:
        if doc.vector is None or doc.id == exclude_id:
            continue
        norm = math.sqrt(sum(v * v for v in doc.vector))
        if norm == 0 or query_norm == 0:
            continue
        cosine = sum(q * v for q, v in zip(query, doc.vector)) / (norm * query_norm)
        score = (1 + cosine) / 2
        if threshold is None or score >= threshold:
            scored.append((doc.id, score))
    scored.sort(key=lambda item: item[1], reverse=True)
    return scored[:k]
