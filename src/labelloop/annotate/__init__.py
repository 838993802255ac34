"""Stage drivers over a project store: suggest, route, the feedback loop, labeler checks."""
