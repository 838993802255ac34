"""labelloop.store."""
