"""Adapters that drive the loop's stages: the events-outbox loop worker (thread or process)."""
