"""The review queue: leases so two people never get the same item, submit, skip, undo."""

from labelloop.review.queue import (
    LeaseError,
    ReviewQueue,
)

__all__ = ["LeaseError", "ReviewQueue"]
