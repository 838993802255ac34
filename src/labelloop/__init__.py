"""labelloop: annotate data in real time and at scale, and keep the models that learn from it healthy."""

__version__ = "0.1.0"
