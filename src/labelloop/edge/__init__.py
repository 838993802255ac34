"""The on-device runtime for an exported edge bundle (``labelloop export-edge``).

It imports only the standard library, numpy, onnxruntime and tokenizers (no other labelloop
module, no pandas, scikit-learn or HTTP client), so a device installs little and starts fast::

    from labelloop.edge import EdgeAnnotator
    with EdgeAnnotator("bundle/") as edge:
        edge.annotate(["free entry to win a prize"])
        edge.sync("https://labels.example.org", token)

Command line: ``python -m labelloop.edge annotate BUNDLE INPUT`` and ``... sync BUNDLE URL``.
"""

from labelloop.edge.annotator import EdgeAnnotator
from labelloop.edge.bundle import FORMAT_VERSION, BundleError, read_manifest
from labelloop.edge.sync import SyncError

__all__ = ["FORMAT_VERSION", "BundleError", "EdgeAnnotator", "SyncError", "read_manifest"]
