"""Getting labels out (CSV, JSONL, Parquet) and in and out of Label Studio's JSON task format."""

from labelloop.interop.label_studio import (
    ImportIssue,
    ImportSummary,
    LabelStudioReader,
    export_label_studio,
    import_label_studio,
    label_studio_config,
)
from labelloop.interop.tables import (
    FORMATS,
    ExportError,
    ExportSummary,
    export_format,
    export_labels,
)

__all__ = [
    "FORMATS",
    "ExportError",
    "ExportSummary",
    "ImportIssue",
    "ImportSummary",
    "LabelStudioReader",
    "export_format",
    "export_label_studio",
    "export_labels",
    "import_label_studio",
    "label_studio_config",
]
