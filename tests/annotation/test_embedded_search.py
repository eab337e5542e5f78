"""The embedded search engine's decisions, on plain record documents (no server needed)."""

from datetime import datetime

import pytest

from annotation.server.argilla_process import search_match as sm

ANN, BOB = "user-ann", "user-bob"


def doc(i, status="pending", responses=(), metadata=None, suggestions=None, text=None, vector=None):
    return sm.RecordDoc(
        id=f"r{i}",
        external_id=f"e{i}",
        status=status,
        inserted_at=datetime(2026, 1, 1, 0, 0, i),
        updated_at=datetime(2026, 1, 1, 0, 0, i),
        text=text or {},
        metadata=metadata or {},
        responses=list(responses),
        suggestions=suggestions or {},
        vector=vector,
    )


def ids(docs, **query):
    page, total = sm.search(docs, **query)
    assert total == len(page) or query.get("limit")
    return [record_id for record_id, _ in page]


def status_filter(*values, user=ANN):
    return sm.Terms(sm.ResponseScope(property="status", user_id=user), values)


DOCS = [
    doc(0),
    doc(1, responses=[sm.ResponseDoc(ANN, "submitted", {"preference": "a"})]),
    doc(2, responses=[sm.ResponseDoc(BOB, "submitted", {"preference": "b"})], status="completed"),
    doc(3, responses=[sm.ResponseDoc(ANN, "draft", {"preference": "b"}), sm.ResponseDoc(BOB, "discarded", {})]),
]


def test_the_annotators_queue_is_what_they_have_not_answered():
    assert ids(DOCS, flt=status_filter("pending")) == ["r0", "r2"]
    assert ids(DOCS, flt=status_filter("pending", user=BOB)) == ["r0", "r1"]
    assert ids(DOCS, flt=status_filter("submitted")) == ["r1"]
    assert ids(DOCS, flt=status_filter("draft", "pending")) == ["r0", "r2", "r3"]
    assert ids(DOCS, flt=status_filter("pending", user=None)) == ["r0"]  # nobody answered
    assert ids(DOCS, flt=status_filter("discarded", user=None)) == ["r3"]


def test_response_value_filters_look_at_one_response_of_the_user():
    by_question = sm.Terms(sm.ResponseScope(question="preference", user_id=ANN), ("b",))
    assert ids(DOCS, flt=by_question) == ["r3"]
    anyone = sm.Terms(sm.ResponseScope(question="preference"), ("b",))
    assert ids(DOCS, flt=anyone) == ["r2", "r3"]


def test_and_of_record_metadata_and_suggestion_filters():
    docs = [
        doc(0, metadata={"category": "math", "models": ["m1", "m2"], "n": 3}, suggestions={"preference": sm.SuggestionDoc("a", 0.9, "judge")}),
        doc(1, metadata={"category": "chat", "models": ["m2", "m3"], "n": 7}, status="completed"),
        doc(2, metadata={"category": "math", "n": 10}, suggestions={"preference": sm.SuggestionDoc("b", 0.4, "judge")}),
    ]
    assert ids(docs, flt=sm.Terms(sm.MetadataScope("models"), ("m3",))) == ["r1"]
    assert ids(docs, flt=sm.Range(sm.MetadataScope("n"), ge=3, le=7)) == ["r0", "r1"]
    both = sm.All((sm.Terms(sm.MetadataScope("category"), ("math",)), sm.Range(sm.SuggestionScope("preference", "score"), ge=0.5)))
    assert ids(docs, flt=both) == ["r0"]
    assert ids(docs, flt=sm.Terms(sm.RecordScope("status"), ("completed",))) == ["r1"]
    since = sm.Range(sm.RecordScope("inserted_at"), ge="2026-01-01T00:00:01Z")
    assert ids(docs, flt=since) == ["r1", "r2"]
    assert sm.parts_needed(both, [], None) == {"metadata", "suggestions"}


def test_sort_puts_missing_values_last_in_both_directions():
    docs = [doc(0, metadata={"n": 2}), doc(1), doc(2, metadata={"n": 5}), doc(3, metadata={"n": 1})]
    ascending = [sm.SortKey(sm.MetadataScope("n"))]
    descending = [sm.SortKey(sm.MetadataScope("n"), descending=True)]
    assert ids(docs, sort=ascending) == ["r3", "r0", "r2", "r1"]
    assert ids(docs, sort=descending) == ["r2", "r0", "r3", "r1"]
    assert ids(docs, sort=descending, offset=1, limit=2) == ["r0", "r3"]
    assert sm.search(docs, sort=descending, offset=1, limit=2)[1] == 4


def test_without_sort_each_user_gets_a_stable_order_of_their_own():
    docs = [doc(i) for i in range(30)]
    plain = ids(docs)
    assert plain == [f"r{i}" for i in range(30)]
    ann, again, bob = ids(docs, user_id=ANN), ids(docs, user_id=ANN), ids(docs, user_id=BOB)
    assert ann == again and sorted(ann) == sorted(plain)
    assert ann != plain and ann != bob


def test_text_query():
    docs = [
        doc(0, text={"prompt": "How do I sort a list in Python?", "answer_a": "Use sorted(list)."}),
        doc(1, text={"prompt": "What is a linked list?", "answer_a": "A list of nodes; each node links to the next list node."}),
        doc(2, text={"prompt": "Sorting algorithms", "answer_a": "Quicksort and mergesort."}),
    ]
    page, total = sm.search(docs, text=sm.TextSearch("list"))
    assert total == 2 and page[0] == ("r1", 3.0)  # three occurrences rank first
    assert ids(docs, text=sm.TextSearch('"linked list"')) == ["r1"]
    assert sm.search(docs, text=sm.TextSearch("sort*"))[0] == [("r0", 2.0), ("r2", 1.0)]  # sort, sorted; sorting
    assert ids(docs, text=sm.TextSearch("list -python")) == ["r1"]
    assert ids(docs, text=sm.TextSearch("python list")) == ["r0"]
    assert ids(docs, text=sm.TextSearch("nodes", field="prompt")) == []
    assert [q.words for q in sm.parse_text_query('a "b c" -d e*')] == [("a",), ("b", "c"), ("d",), ("e",)]


def test_progress_and_metrics():
    assert sm.record_status_counts(DOCS) == {"total": 4, "pending": 3, "completed": 1}
    assert sm.user_response_counts(DOCS, ANN) == {"total": 2, "submitted": 1, "draft": 1}
    assert sm.user_response_counts(DOCS, BOB) == {"total": 2, "submitted": 1, "discarded": 1}
    total, ranked = sm.terms_metrics([["m1", "m2"], ["m2"], None, "m3", ["m2", "m2"]])
    assert total == 6 and ranked == [("m2", 3), ("m1", 1), ("m3", 1)]
    assert sm.numeric_metrics([3, None, 1.5, [7]]) == (1.5, 7)
    assert sm.numeric_metrics([None]) == (None, None)


def test_similarity_is_cosine_scored_like_elasticsearch():
    docs = [doc(0, vector=[1.0, 0.0]), doc(1, vector=[0.0, 1.0]), doc(2, vector=[1.0, 1.0]), doc(3)]
    ranked = sm.most_similar(docs, [1.0, 0.0], k=2)
    assert ranked == [("r0", pytest.approx(1.0)), ("r2", pytest.approx((1 + 2 ** -0.5) / 2))]
    assert [r for r, _ in sm.most_similar(docs, [1.0, 0.0], k=5, exclude_id="r0", threshold=0.6)] == ["r2"]


def test_unknown_response_filter_is_an_error():
    with pytest.raises(ValueError):
        sm.matches(DOCS[0], sm.Range(sm.ResponseScope(property="status"), ge=1))
