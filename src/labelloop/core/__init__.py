"""Domain types, project configuration and errors. Knows nothing of storage or HTTP."""

from labelloop.core.config import LabelSpec, ProjectConfig, load_project_config
from labelloop.core.errors import ConfigError, IngestError, LabelloopError
from labelloop.core.types import Item, Suggestion

__all__ = [
    "ConfigError",
    "IngestError",
    "Item",
    "LabelSpec",
    "LabelloopError",
    "ProjectConfig",
    "Suggestion",
    "load_project_config",
]
