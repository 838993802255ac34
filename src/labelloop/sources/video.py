"""Video files as image items: one item per sampled frame, consecutive look-alikes grouped.

A frame is sampled at the first frame at or after each multiple of ``every_seconds`` (at most
``max_frames`` per file), written as a PNG under the project's media folder, and becomes an image
item whose metadata holds its video, frame number, time in seconds and group. Consecutive
frames that look alike (the mean absolute difference of 16x16 grayscale thumbnails, on the
0-255 scale, from the group's first frame at most ``group_max_difference``) share a group, so
they can be labeled once.

Decoding is OpenCV's (``opencv-python-headless``, the ``video`` extra), imported only when a
video is met: its Linux wheels carry FFmpeg under the LGPL 2.1 and no GPL codec. (PyAV's wheels
were the first choice; they bundle libx264 and libx265, which are GPL.)
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from labelloop.core.config import Modality, ProjectConfig, VideoSettings
from labelloop.core.errors import IngestError
from labelloop.sources.records import RawRecord

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv"}
INSTALL_HINT = "pip install 'labelloop[video]'"
# In a folder, video number k (1-based, in sorted order) has positions k * FRAME_POSITIONS +
# frame number + 1: apart from the images' 1..n and stable when the sampling rate changes.
FRAME_POSITIONS = 10**9
THUMBNAIL = 16
FRAMES_FOLDER = "frames"


class VideoError(IngestError):
    """A video cannot be opened or decoded."""


@dataclass(frozen=True, slots=True)
class Frame:
    """A sampled frame: its number in the video (0-based), its time and its RGB pixels."""

    index: int
    seconds: float
    rgb: np.ndarray  # height x width x 3, uint8


def require_decoder() -> ModuleType:
    """OpenCV, or an IngestError saying how to install it."""
    try:
        import cv2
    except ImportError:
        raise IngestError(
            f"video files need a decoder, and OpenCV is not installed: {INSTALL_HINT}"
        ) from None
    return cv2


def check_video_source(config: ProjectConfig, video_files: Sequence[Path]) -> None:
    """Before anything is read: video frames are image items, and need the decoder."""
    if not video_files:
        return
    if config.modality != Modality.image:
        raise IngestError(
            f"{video_files[0]}: a video file; its frames become image items, but this "
            f"project's modality is {config.modality} (an image project is made with "
            "`labelloop init FOLDER --modality image --labels ...`, or `modality: image`)"
        )
    require_decoder()


def sample_frames(
    path: str | Path, every_seconds: float = 1.0, max_frames: int = 300
) -> Iterator[Frame]:
    """The first frame at or after each multiple of ``every_seconds``, ``max_frames`` at most.

    Raises VideoError when the file cannot be opened, or stops decoding part way.
    """
    if every_seconds <= 0:
        raise ValueError(f"every_seconds={every_seconds}: expected > 0")
    if max_frames < 1:
        raise ValueError(f"max_frames={max_frames}: expected >= 1")
    cv2 = require_decoder()
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: cannot open the video (not a video, or an unknown codec)")
        fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        taken, index, due, last = 0, -1, 0.0, -1.0
        while taken < max_frames and cap.grab():
            index += 1
            seconds = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if seconds <= last and fps > 0:  # a container without timestamps: count frames
                seconds = index / fps
            last = seconds
            if seconds + 1e-6 < due:
                continue
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                raise VideoError(f"{path}: frame {index} could not be decoded")
            yield Frame(index, round(seconds, 6), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            taken += 1
            due = (math.floor(seconds / every_seconds + 1e-6) + 1) * every_seconds
        if index < 0:
            raise VideoError(f"{path}: no frame could be decoded")
    finally:
        cap.release()


def thumbnail(rgb: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    """A ``size`` x ``size`` grayscale copy (float32, 0-255), each pixel a box average."""
    from PIL import Image

    gray = Image.fromarray(np.ascontiguousarray(rgb)).convert("L")
    return np.asarray(gray.resize((size, size), Image.Resampling.BOX), dtype=np.float32)


def frame_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, on the 0-255 scale."""
    return float(np.mean(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))


class FrameGrouper:
    """Groups frames as they come: a frame joins the current group when it differs from that
    group's first frame by at most ``max_difference``; otherwise it opens the next group. Only
    consecutive frames group, and a slow drift cannot chain a whole video into one group."""

    def __init__(self, max_difference: float) -> None:
        if max_difference < 0:
            raise ValueError(f"max_difference={max_difference}: expected >= 0")
        self.max_difference = max_difference
        self.group = -1
        self._head: np.ndarray | None = None

    def add(self, thumb: np.ndarray) -> int:
        """The group id (0, 1, ... in order) of the next frame, given its thumbnail."""
        if self._head is None or frame_difference(thumb, self._head) > self.max_difference:
            self.group += 1
            self._head = thumb
        return self.group


def frame_groups(
    thumbnails: Sequence[np.ndarray] | np.ndarray, max_difference: float
) -> np.ndarray:
    """Group id per frame of one video, in order (see ``FrameGrouper``)."""
    grouper = FrameGrouper(max_difference)
    return np.array([grouper.add(t) for t in thumbnails], dtype=np.int64)


def _frame_folder(media_dir: Path, video: Path) -> Path:
    """Where a video's frames go: media/frames/<safe stem>-<digest of its real path>."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", video.stem).strip("._")[:60] or "video"
    digest = hashlib.sha256(str(video.resolve()).encode("utf-8", "surrogateescape")).hexdigest()
    return media_dir / FRAMES_FOLDER / f"{stem}-{digest[:12]}"


def _write_png(rgb: np.ndarray, path: Path) -> None:
    """The frame as a PNG, written whole or not at all (a temporary file, then a rename)."""
    from PIL import Image

    if path.exists():
        return  # the same video and frame number: the same pixels, written before
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            Image.fromarray(rgb).save(out, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def frame_records(
    video: Path,
    name: str,
    media_dir: Path,
    settings: VideoSettings,
    base_position: int = 0,
) -> Iterator[RawRecord]:
    """The sampled frames of ``video`` as image records; ``name`` is how items name the video.

    Each frame's PNG is written under ``media_dir`` (refused if that would land outside it).
    Its identity (content hash) is its pixels and time, so ingesting the video again adds
    nothing. A video that cannot be read becomes one quarantined record; an error part way
    keeps the frames read before it.
    """
    root = media_dir.resolve()
    folder = _frame_folder(media_dir, video)
    grouper = FrameGrouper(settings.group_max_difference)
    position = base_position  # of the last frame yielded
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.resolve().is_relative_to(root):
            raise IngestError(f"{folder}: the frames folder leads outside {media_dir}")
        for frame in sample_frames(video, settings.every_seconds, settings.max_frames_per_file):
            position = base_position + frame.index + 1
            group = grouper.add(thumbnail(frame.rgb))
            target = folder / f"{frame.index:08d}.png"
            _write_png(frame.rgb, target)
            height, width = frame.rgb.shape[:2]
            identity = hashlib.sha256(frame.rgb.tobytes()).digest()
            yield RawRecord(
                position,
                fields={
                    "path": f"{name}#t={frame.seconds:.3f}",
                    "video": name,
                    "frame": frame.index,
                    "seconds": frame.seconds,
                    "group": group,
                    "width": width,
                    "height": height,
                },
                media_path=str(target.resolve()),
                media_bytes=b"video-frame\0%dx%d\0%.6f\0" % (width, height, frame.seconds)
                + identity,
            )
    except VideoError as exc:
        yield RawRecord(position + 1, error=f"unreadable video: {exc}", raw=name)
    except OSError as exc:  # the media folder cannot be written
        raise IngestError(f"{media_dir}: cannot write video frames ({exc})") from None


class VideoReader:
    """One video file: its sampled frames, positions = frame number + 1."""

    def __init__(self, path: Path, media_dir: Path, settings: VideoSettings) -> None:
        self.path = path
        self.source_id = str(path.resolve())
        self.media_dir = media_dir
        self.settings = settings
        self.video_files = [path]

    def columns(self) -> list[str] | None:
        return None

    def size_hint(self) -> int | None:
        return None

    def records(self) -> Iterator[RawRecord]:
        yield from frame_records(self.path, self.path.name, self.media_dir, self.settings)
