"""Getting labels out (CSV, JSONL, Parquet) and in and out of Label Studio's JSON task format."""

from labelloop.interop.label_studio import (
    ImportIssue,
    ImportSummary,
    LabelStudioReader,
    import_label_studio,
)
from labelloop.interop.label_studio_config import label_studio_config, read_label_config
from labelloop.interop.label_studio_export import (
    LabelStudioExportSummary,
    export_kind,
    export_label_studio,
)
from labelloop.interop.label_studio_push import PushSummary as LabelStudioPushSummary
from labelloop.interop.label_studio_push import push_label_studio
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
    "LabelStudioExportSummary",
    "LabelStudioPushSummary",
    "LabelStudioReader",
    "export_format",
    "export_kind",
    "export_label_studio",
    "export_labels",
    "import_label_studio",
    "label_studio_config",
    "push_label_studio",
    "read_label_config",
]
