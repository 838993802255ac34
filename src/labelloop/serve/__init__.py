"""Serving the deployed model: the edge bundle's export (more to come)."""
