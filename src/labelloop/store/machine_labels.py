"""Taking machine labels back: an item whose machine label the current models no longer
support returns to the routing pool (state ``suggested``), its final label removed."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, delete, update

from labelloop.store.interop import batches
from labelloop.store.models import FinalLabelRow, ItemRow, ItemState


def revoke_machine_labels(conn: Connection, project_id: int, item_ids: Sequence[int]) -> int:
    """Remove the machine final labels of ``item_ids`` (items in state ``auto`` only: a label a
    person gave, or a machine label out for audit, stays) and put those items back to
    ``suggested``. Returns how many were taken back."""
    f, t = FinalLabelRow.__table__, ItemRow.__table__
    taken = 0
    for chunk in batches([int(i) for i in item_ids]):
        moved = conn.execute(
            update(t)
            .where(t.c.project_id == project_id, t.c.id.in_(chunk), t.c.state == ItemState.auto)
            .values(state=ItemState.suggested)
            .returning(t.c.id)
        ).scalars()
        ids = list(moved)
        if ids:
            conn.execute(delete(f).where(f.c.item_id.in_(ids), f.c.source_kind == "machine"))
        taken += len(ids)
    return taken
