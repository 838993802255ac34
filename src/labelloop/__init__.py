"""labelloop: annotate data in real time and at scale, and keep the models that learn from it healthy."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Project", "__version__"]


def __getattr__(name: str) -> Any:
    # ``labelloop.Project`` is imported on first use: ``labelloop --help`` and the CLI's
    # startup need none of the models and numeric libraries behind it.
    if name == "Project":
        from labelloop.project import Project

        return Project
    raise AttributeError(f"module 'labelloop' has no attribute {name!r}")
