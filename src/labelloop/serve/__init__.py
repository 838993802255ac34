"""Serving the deployed model: the prediction app (A/B, shadow, MLflow's ``/invocations``,
the prediction log), batch prediction over files, and the edge bundle's export."""

from labelloop.serve.batch import BatchSummary, predict_file
from labelloop.serve.traffic import choose_variant

__all__ = ["BatchSummary", "choose_variant", "predict_file"]
