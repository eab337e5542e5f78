"""Two changes to argilla-server 2.8.0's bulk record upload that keep its behaviour and drop its
waste (the one place this project touches argilla-server's internals; checked against its version).

Profiled (py-spy on the server during `push`), nearly all of a bulk upsert's time went to:

1. `MetadataProperty.parsed_settings` and `Question.parsed_settings` build a pydantic
   `TypeAdapter` of a discriminated union on every call, i.e. per metadata value and per
   suggestion of every record. Building the adapter once gives the same validation.
2. after the commit, every record gets a webhook event built (a dataset query with five eager
   loads, then a pydantic dump of the record) only for `enqueue_notify_events` to find that no
   webhook is enabled and drop it. Here the enabled webhooks are looked up once per request
   (database session); when there are none, no event is built. With a webhook enabled,
   argilla-server's own path runs unchanged.

With another argilla-server version nothing is changed (the server logs why).
"""

from __future__ import annotations

import logging
import weakref

EXPECTED_VERSION = "2.8.0"
log = logging.getLogger("klear.speedups")


def install() -> bool:
    from argilla_server._version import __version__

    if __version__ != EXPECTED_VERSION:
        log.warning("argilla-server %s is not %s: its bulk upload is left as it is", __version__, EXPECTED_VERSION)
        return False
    _cache_settings_adapters()
    _skip_unsubscribed_record_events()
    return True


def _cache_settings_adapters() -> None:
    from pydantic import TypeAdapter

    from argilla_server.models import database

    for model, settings_type in ((database.MetadataProperty, database.MetadataPropertySettings),
                                 (database.Question, database.QuestionSettings)):
        adapter = TypeAdapter(settings_type)
        model.parsed_settings = property(lambda self, adapter=adapter: adapter.validate_python(self.settings))


def _skip_unsubscribed_record_events() -> None:
    from argilla_server.bulk import records_bulk
    from argilla_server.contexts.webhooks import list_enabled_webhooks

    notify = records_bulk.notify_record_event_v1
    webhooks_enabled = weakref.WeakKeyDictionary()  # database session -> any webhook enabled

    async def notify_if_subscribed(db, record_event, record):
        if db not in webhooks_enabled:
            webhooks_enabled[db] = bool(await list_enabled_webhooks(db))
        if not webhooks_enabled[db]:
            return []
        return await notify(db, record_event, record)

    records_bulk.notify_record_event_v1 = notify_if_subscribed
