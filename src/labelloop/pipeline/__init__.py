"""Runs the stages over a project's store: embed, suggest, route (and, later, retrain)."""
