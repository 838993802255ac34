"""The deployed model's lifecycle (issue 14, items 1-4): label snapshots and splits
(``datasets``), preparation pipelines and the data-quality report (``prepare``), candidates,
cross-validation and Optuna tuning (``select``), test-split evaluation (``evaluate``), and the
driver that runs them over a project (``train``).

The annotation loop's student (``labelers``, ``learn``) is a different model: it labels the pool
while people work. This package builds the model a project ships.
"""

from labelloop.mlops.datasets import Dataset, assign_split, dataset_version, snapshot
from labelloop.mlops.train import TrainResult, evaluate_latest, train, train_frame

__all__ = [
    "Dataset",
    "TrainResult",
    "assign_split",
    "dataset_version",
    "evaluate_latest",
    "snapshot",
    "train",
    "train_frame",
]
