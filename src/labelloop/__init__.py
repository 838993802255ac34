"""labelloop: annotate data in real time and at scale, and keep the models that learn from it healthy."""

from labelloop.project import Project

__version__ = "0.1.0"
__all__ = ["Project", "__version__"]
