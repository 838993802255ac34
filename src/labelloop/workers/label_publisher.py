"""People's labels on streamed items, published after the machines' decisions.

A stream worker publishes each item's decision ("auto" with a label, or "review"); when a
person later labels an item a stream worker decided, the downstream system needs that label
too. ``LabelPublisher.step`` reads the project's events outbox after its cursor, and for each
``label`` event on such an item publishes ``{"decision": "human", "labels", "annotator",
"item_id", "external_id"}`` to the same sink under the key ``label:<event id>`` (published
once: a publisher killed before it moves its cursor publishes nothing twice), then moves the
cursor. The stream worker runs it between batches (``stream-worker --publish-labels``).
"""

from __future__ import annotations

from typing import Any

from labelloop.store.context import ProjectContext
from labelloop.store.loop_state import events_after, get_cursor, set_cursor
from labelloop.store.stream_decisions import decided_external_ids


class LabelPublisher:
    def __init__(self, ctx: ProjectContext, sink: Any, name: str = "label-publisher") -> None:
        self.ctx = ctx
        self.sink = sink
        self.name = name
        self.published = 0

    def step(self, limit: int = 1000) -> int:
        """Publish the labels of events after the cursor; how many were published now."""
        ctx = self.ctx
        cursor = get_cursor(ctx.db, ctx.id, self.name)
        events = events_after(ctx.db, ctx.id, cursor, limit)
        if not events:
            return 0
        labels = [(eid, item, payload) for eid, kind, item, payload in events if kind == "label"]
        streamed = decided_external_ids(ctx.db, ctx.id, [item for _, item, _ in labels if item])
        published = 0
        for event_id, item_id, payload in labels:
            if item_id not in streamed:
                continue
            decision = {
                "decision": "human",
                "item_id": item_id,
                "external_id": streamed[item_id],
                "labels": payload.get("labels"),
                "annotator": payload.get("annotator"),
            }
            published += bool(self.sink.publish(f"label:{event_id}", decision))
        set_cursor(ctx.db, ctx.id, self.name, events[-1][0])
        self.published += published
        return published
