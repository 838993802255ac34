"""The edge bundle's format: which files a bundle holds and how its manifest vouches for them.

A bundle is one folder: ``manifest.json`` plus the files it lists, each with its size and
SHA-256. Nothing is loaded before every listed file is checked, so a truncated copy, a flipped
byte or a missing file is refused with the file's name instead of failing later inside
onnxruntime (or, worse, answering with a damaged model). The exporter
(``labelloop.serve.edge_export``) writes the same names from the constants here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

FORMAT = "labelloop-edge"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
MANIFEST = "manifest.json"
EMBEDDER_FILE = "embedder.onnx"
TOKENIZER_FILE = "tokenizer.json"
HEAD_FILE = "head.onnx"
LABELS_FILE = "labels.json"
THRESHOLDS_FILE = "thresholds.json"
# The files each kind of bundle must list (a text bundle embeds, a table bundle does not).
REQUIRED = {
    "text": (EMBEDDER_FILE, TOKENIZER_FILE, HEAD_FILE, LABELS_FILE, THRESHOLDS_FILE),
    "table": (HEAD_FILE, LABELS_FILE, THRESHOLDS_FILE),
}
_READ_CHUNK = 1 << 20


class BundleError(Exception):
    """The bundle cannot be used: a file is missing or damaged, or its format is unknown."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_READ_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """What the manifest records of one file: its size and SHA-256."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _safe_name(name: object) -> bool:
    """A plain file name inside the bundle folder (no separators, no ``..``)."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
    )


def read_manifest(bundle_dir: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """The bundle's manifest after checking it: known format and version, every required file
    listed, and (``verify``) every listed file present with the recorded size and SHA-256."""
    folder = Path(bundle_dir)
    path = folder / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: no {MANIFEST}; is {folder} an edge bundle?")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not a {FORMAT} manifest")
    version = manifest.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise BundleError(
            f"{path}: format version {version!r} is not supported by this runtime "
            f"(it reads {', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}); update labelloop"
        )
    kind = manifest.get("kind")
    if kind not in REQUIRED:
        raise BundleError(f"{path}: unknown bundle kind {kind!r} (one of {sorted(REQUIRED)})")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{path}: the manifest lists no files")
    for name in REQUIRED[kind]:
        if name not in files:
            raise BundleError(f"{path}: the manifest does not list {name}")
    for name, entry in files.items():
        if not _safe_name(name) or not isinstance(entry, dict):
            raise BundleError(f"{path}: bad file entry {name!r}")
        if verify:
            _check_file(folder, name, entry)
    return manifest


def _check_file(folder: Path, name: str, entry: dict[str, Any]) -> None:
    target = folder / name
    if not target.is_file():
        raise BundleError(f"{target}: missing from the bundle (the manifest lists it)")
    size = target.stat().st_size
    if size != entry.get("bytes"):
        raise BundleError(
            f"{target}: {size:,} bytes, the manifest says {entry.get('bytes')!r}: "
            "the file is damaged or was replaced"
        )
    if sha256_file(target) != entry.get("sha256"):
        raise BundleError(
            f"{target}: checksum mismatch (SHA-256 differs from the manifest): "
            "the file is damaged or was replaced"
        )
