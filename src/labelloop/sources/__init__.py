"""labelloop.sources."""
