"""The embedded search engine: argilla-server's `SearchEngine`, answered from Argilla's database.

Runs inside the argilla-server process (its own virtual environment), registered as
`ARGILLA_SEARCH_ENGINE=embedded` by `launch.py`. Elasticsearch keeps a second copy of every
record that argilla-server updates after each change; this engine keeps none: every query reads
the dataset's rows (records, responses, suggestions, metadata) from the database that
argilla-server has already committed them to, and `search_match.py` evaluates the query. So
nothing can drift out of date, the rq worker's status updates are seen at once, and a restart
loses nothing (there is no index to rebuild: the database is the index). Reading a whole
dataset per query is linear in its size, which suits the datasets of a team without
Elasticsearch (tens of thousands of records); `serve --elasticsearch URL` is for more.

The write-side methods exist because argilla-server calls them after each commit; they have
nothing to store here.
"""

from __future__ import annotations

import json
from typing import Dict, Iterable, List, Optional, Union

from sqlalchemy import select

from argilla_server.database import AsyncSessionLocal
from argilla_server.enums import SimilarityOrder, SortOrder
from argilla_server.errors.future import UnprocessableEntityError
from argilla_server.models import (
    Dataset,
    Field,
    MetadataProperty,
    Question,
    Record,
    Response,
    Suggestion,
    User,
    Vector,
    VectorSettings,
)
from argilla_server.search_engine import base

from annotation.server.argilla_process import search_match as sm

ENGINE_NAME = "embedded"


@base.SearchEngine.register(ENGINE_NAME)
class EmbeddedSearchEngine(base.SearchEngine):
    @classmethod
    async def new_instance(cls) -> "EmbeddedSearchEngine":
        return cls()

    async def close(self):
        pass

    async def ping(self) -> bool:
        async with AsyncSessionLocal() as db:
            await db.execute(select(1))
        return True

    async def info(self) -> dict:
        return {"distribution": "klear-align embedded", "storage": "argilla-server database"}

    # ------------------------------------------------------------ writes: already in the database

    async def create_index(self, dataset: Dataset):
        pass

    async def delete_index(self, dataset: Dataset):
        pass

    async def configure_metadata_property(self, dataset: Dataset, metadata_property: MetadataProperty):
        pass

    async def configure_index_vectors(self, vector_settings: VectorSettings):
        pass

    async def index_records(self, dataset: Dataset, records: Iterable[Record]):
        pass

    async def partial_record_update(self, record: Record, **update):
        pass

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]):
        pass

    async def update_record_response(self, response: Response):
        pass

    async def delete_record_response(self, response: Response):
        pass

    async def update_record_suggestion(self, suggestion: Suggestion):
        pass

    async def delete_record_suggestion(self, suggestion: Suggestion):
        pass

    # ------------------------------------------------------------ reads

    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        if dataset.is_draft:
            return {}
        docs = await _load_docs(dataset.id, parts=set())
        return sm.record_status_counts(docs)

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        if dataset.is_draft:
            return {}
        docs = await _load_docs(dataset.id, parts={"responses"})
        return sm.user_response_counts(docs, str(user.id))

    async def search(
        self,
        dataset: Dataset,
        query: Optional[Union[base.TextQuery, str]] = None,
        filter: Optional[base.Filter] = None,
        sort: Optional[List[base.Order]] = None,
        offset: int = 0,
        limit: int = 100,
        user_id: Optional[str] = None,
    ) -> base.SearchResponses:
        text = await _text_search(dataset.id, query)
        flt = _filter(filter) if filter else None
        keys = [_sort_key(order) for order in sort or []]
        docs = await _load_docs(dataset.id, parts=sm.parts_needed(flt, keys, text))
        page, total = sm.search(
            docs,
            text=text,
            flt=flt,
            sort=keys,
            user_id=str(user_id) if user_id else None,
            offset=offset,
            limit=limit,
        )
        return _responses(page, total)

    async def similarity_search(
        self,
        dataset: Dataset,
        vector_settings: VectorSettings,
        value: Optional[List[float]] = None,
        record: Optional[Record] = None,
        query: Optional[Union[base.TextQuery, str]] = None,
        filter: Optional[base.Filter] = None,
        max_results: int = 100,
        order: SimilarityOrder = SimilarityOrder.most_similar,
        threshold: Optional[float] = None,
    ) -> base.SearchResponses:
        if bool(value) == bool(record):
            raise ValueError("Must provide either vector value or record to compute the similarity search")
        text = await _text_search(dataset.id, query)
        flt = _filter(filter) if filter else None
        parts = sm.parts_needed(flt, [], text) | {"vectors"}
        docs = await _load_docs(dataset.id, parts=parts, vector_settings_id=vector_settings.id)
        if record is not None:
            value = next((d.vector for d in docs if d.id == str(record.id)), None)
            if not value:
                raise UnprocessableEntityError(f"Record `{record.id}` has no vector `{vector_settings.name}`")
        if order == SimilarityOrder.least_similar:
            value = [-v for v in value]
        candidates = [d for d in docs if sm.matches(d, flt) and (text is None or sm.text_score(d, text) is not None)]
        ranked = sm.most_similar(
            candidates,
            value,
            k=max_results,
            exclude_id=str(record.id) if record is not None else None,
            threshold=threshold,
        )
        return _responses(ranked, len(ranked))

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> base.MetadataMetrics:
        docs = await _load_docs(metadata_property.dataset_id, parts={"metadata"})
        values = [d.metadata.get(metadata_property.name) for d in docs]
        if metadata_property.is_terms:
            total, ranked = sm.terms_metrics(values)
            return base.TermsMetrics(
                total=total, values=[base.TermsMetrics.TermCount(term=t, count=c) for t, c in ranked]
            )
        low, high = sm.numeric_metrics(values)
        if metadata_property.is_integer:
            return base.IntegerMetadataMetrics(min=low, max=high)
        return base.FloatMetadataMetrics(min=low, max=high)


# ---------------------------------------------------------------- Argilla's objects -> search_match's


def _filter(flt: base.Filter) -> sm.Filter:
    if isinstance(flt, base.AndFilter):
        return sm.All(tuple(_filter(inner) for inner in flt.filters))
    scope = _scope(flt.scope)
    if isinstance(flt, base.TermsFilter):
        return sm.Terms(scope, tuple(flt.values))
    if isinstance(flt, base.RangeFilter):
        return sm.Range(scope, ge=flt.ge, le=flt.le)
    raise UnprocessableEntityError(f"The embedded search engine cannot process filter {flt}")


def _scope(scope: base.FilterScope) -> sm.Scope:
    if isinstance(scope, base.RecordFilterScope):
        return sm.RecordScope(str(scope.property))
    if isinstance(scope, base.MetadataFilterScope):
        return sm.MetadataScope(scope.metadata_property)
    if isinstance(scope, base.SuggestionFilterScope):
        return sm.SuggestionScope(scope.question, str(scope.property))
    if isinstance(scope, base.ResponseFilterScope):
        user_id = str(scope.user.id) if scope.user is not None else None
        return sm.ResponseScope(scope.question, scope.property, user_id)
    raise UnprocessableEntityError(f"The embedded search engine cannot process scope {scope}")


def _sort_key(order: base.Order) -> sm.SortKey:
    return sm.SortKey(_scope(order.scope), descending=order.order == SortOrder.desc)


async def _text_search(dataset_id, query) -> Optional[sm.TextSearch]:
    if query is None:
        return None
    if isinstance(query, str):
        query = base.TextQuery(q=query)
    if query.field is not None:
        async with AsyncSessionLocal() as db:
            known = await db.scalar(select(Field.id).where(Field.dataset_id == dataset_id, Field.name == query.field))
        if known is None:
            raise UnprocessableEntityError(f"Field `{query.field}` not found in dataset `{dataset_id}`.")
    return sm.TextSearch(q=query.q, field=query.field)


def _responses(page, total: int) -> base.SearchResponses:
    return base.SearchResponses(
        items=[base.SearchResponseItem(record_id=record_id, score=score) for record_id, score in page],
        total=total,
    )


# ---------------------------------------------------------------- the database -> RecordDocs


async def _load_docs(dataset_id, parts: set, vector_settings_id=None) -> List[sm.RecordDoc]:
    """Read one dataset's records with just the parts a query needs, in one session."""
    columns = [Record.id, Record.external_id, Record.status, Record.inserted_at, Record.updated_at]
    if "text" in parts:
        columns.append(Record.fields.label("fields"))
    if "metadata" in parts:
        columns.append(Record.metadata_.label("meta"))

    async with AsyncSessionLocal() as db:
        rows = (await db.execute(select(*columns).where(Record.dataset_id == dataset_id))).all()
        field_types = {}
        if "text" in parts:
            field_rows = await db.execute(select(Field.name, Field.settings).where(Field.dataset_id == dataset_id))
            field_types = {name: settings.get("type") for name, settings in field_rows}
        docs: Dict[str, sm.RecordDoc] = {}
        for row in rows:
            doc = sm.RecordDoc(
                id=str(row.id),
                external_id=row.external_id,
                status=str(row.status.value if hasattr(row.status, "value") else row.status),
                inserted_at=row.inserted_at,
                updated_at=row.updated_at,
            )
            if "text" in parts:
                doc.text = _searchable_text(row.fields or {}, field_types)
            if "metadata" in parts:
                doc.metadata = row.meta or {}
            docs[doc.id] = doc

        if "responses" in parts:
            query = (
                select(Response.record_id, Response.user_id, Response.status, Response.values)
                .join(Record, Record.id == Response.record_id)
                .where(Record.dataset_id == dataset_id)
            )
            for record_id, user_id, status, values in await db.execute(query):
                answers = {name: (value or {}).get("value") for name, value in (values or {}).items()}
                docs[str(record_id)].responses.append(sm.ResponseDoc(str(user_id), str(status.value), answers))

        if "suggestions" in parts:
            query = (
                select(Suggestion.record_id, Question.name, Suggestion.value, Suggestion.score, Suggestion.agent, Suggestion.type)
                .join(Question, Question.id == Suggestion.question_id)
                .where(Question.dataset_id == dataset_id)
            )
            for record_id, question, value, score, agent, kind in await db.execute(query):
                docs[str(record_id)].suggestions[question] = sm.SuggestionDoc(
                    value, score, agent, kind.value if kind is not None else None
                )

        if "vectors" in parts:
            query = select(Vector.record_id, Vector.value).where(Vector.vector_settings_id == vector_settings_id)
            for record_id, value in await db.execute(query):
                if str(record_id) in docs:
                    docs[str(record_id)].vector = value

    return list(docs.values())


def _searchable_text(fields: dict, field_types: dict) -> dict:
    """Each text-like field as the text a query searches: chat fields by their messages' content."""
    text = {}
    for name, kind in field_types.items():
        value = fields.get(name)
        if value is None or kind == "image":
            continue
        if kind == "chat":
            text[name] = "\n".join(str(message.get("content", "")) for message in value)
        elif kind == "text":
            text[name] = str(value)
        else:
            text[name] = value if isinstance(value, str) else json.dumps(value)
    return text
