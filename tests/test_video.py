"""Video files become image items, one per sampled frame; consecutive look-alikes are grouped."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelloop.core.config import parse_project_config
from labelloop.core.errors import ConfigError, IngestError
from labelloop.project import Project
from labelloop.sources.video import FRAME_POSITIONS, frame_groups, sample_frames

RED, BLUE = (255, 0, 0), (0, 0, 255)


def make_clip(path: Path, colours: list[tuple[int, int, int]], fps: int = 10) -> Path:
    """A 64x64 clip with one solid frame per entry of ``colours`` (RGB), MPEG-4 Part 2."""
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 64))
    assert writer.isOpened(), "this OpenCV cannot encode mp4v"
    for rgb in colours:
        frame = np.zeros((64, 64, 3), np.uint8)
        frame[:] = rgb[::-1]  # OpenCV writes BGR
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """4 s at 10 fps: 2 s of red, then 2 s of blue."""
    return make_clip(tmp_path / "clip.mp4", [RED] * 20 + [BLUE] * 20)


def image_project(make_project, **video) -> Project:
    return make_project(modality="image", labels=["red", "blue"], video=video)


def test_sample_frames_rate_and_maximum(clip: Path) -> None:
    frames = list(sample_frames(clip, every_seconds=1.0, max_frames=3))
    assert [f.index for f in frames] == [0, 10, 20]
    assert [f.seconds for f in frames] == pytest.approx([0.0, 1.0, 2.0])
    assert frames[0].rgb.shape == (64, 64, 3)
    assert frames[0].rgb[32, 32].tolist() == pytest.approx(list(RED), abs=8)
    assert frames[2].rgb[32, 32].tolist() == pytest.approx(list(BLUE), abs=8)
    every = list(sample_frames(clip, every_seconds=0.25, max_frames=1000))  # 0.25 s: 4 per s
    assert [f.index for f in every][:5] == [0, 3, 5, 8, 10]  # the first at or after each step
    assert len(every) == 16


def test_a_clip_becomes_frames_with_timestamps_and_groups(make_project, clip: Path) -> None:
    p = image_project(make_project, every_seconds=0.5, max_frames_per_file=100)
    r = p.ingest(clip)
    assert (r.rows_read, r.items_added, r.quarantined) == (8, 8, 0)
    items = p.items().sort_values("position")
    meta = items["meta"].tolist()
    assert [m["frame"] for m in meta] == [0, 5, 10, 15, 20, 25, 30, 35]
    assert [m["seconds"] for m in meta] == pytest.approx([0.5 * k for k in range(8)])
    assert [m["group"] for m in meta] == [0, 0, 0, 0, 1, 1, 1, 1]  # red, then blue
    assert {m["video"] for m in meta} == {"clip.mp4"}
    assert items["content"].tolist()[:2] == ["clip.mp4#t=0.000", "clip.mp4#t=0.500"]
    assert items["position"].tolist() == [m["frame"] + 1 for m in meta]
    media = p.folder.resolve() / "media"
    for path, m in zip(items["media_path"], meta, strict=True):
        assert Path(path).is_relative_to(media)  # written inside the project folder
        with Image.open(path) as img:
            pixel = img.convert("RGB").getpixel((32, 32))
        assert pixel == pytest.approx(RED if m["group"] == 0 else BLUE, abs=8)
    again = p.ingest(clip)  # the same video again adds nothing
    assert (again.items_added, again.duplicates, again.already_ingested) == (0, 0, 8)


def test_max_frames_per_file_caps_the_frames(make_project, clip: Path) -> None:
    p = image_project(make_project, every_seconds=1.0, max_frames_per_file=3)
    assert p.ingest(clip).items_added == 3
    meta = p.items().sort_values("position")["meta"].tolist()
    assert [(m["frame"], m["seconds"], m["group"]) for m in meta] == [
        (0, 0.0, 0),
        (10, 1.0, 0),
        (20, 2.0, 1),
    ]


def test_a_group_is_labeled_once(tmp_path: Path, clip: Path) -> None:
    """The route step's near-duplicate groups hold each run of identical frames: one review
    per run, and the answer spreads to the rest of it."""
    p = Project.init(
        tmp_path / "p",
        name="v",
        labels=["red", "blue"],
        modality="image",
        video={"every_seconds": 0.5},
    )
    p.ingest(clip)
    p.suggest()
    report = p.route()
    assert (report.queued, report.grouped) == (2, 6)
    items = p.items()
    queued = items[items["state"] == "queued"]
    assert sorted(m["group"] for m in queued["meta"]) == [0, 1]
    item = p.next_item("ana")
    group = item["meta"]["group"]
    colour = ["red", "blue"][group]
    p.submit(item["id"], [colour], annotator="ana")
    final = p.final_labels()
    run = final[final["meta"].map(lambda m: m["group"] == group)]
    assert len(final) == 4 and len(run) == 4  # the whole run, and only it
    assert set(run["labels"].map(tuple)) == {(colour,)}
    assert sorted(run["source_kind"]) == ["human"] + ["propagated"] * 3
    p.close()


def test_frame_groups_only_join_consecutive_look_alikes() -> None:
    red = np.full((16, 16), 76.0, np.float32)
    blue = np.full((16, 16), 29.0, np.float32)
    noisy = red + np.random.default_rng(0).normal(0, 1.0, (16, 16)).astype(np.float32)
    # red, red (noisy), blue, red: the last red is not consecutive with the first ones
    assert frame_groups([red, noisy, blue, red], max_difference=4.0).tolist() == [0, 0, 1, 2]
    # a slow fade: each step is small, but a group stays within 4 of its first frame
    fade = [np.full((16, 16), 100.0 + 3 * k, np.float32) for k in range(6)]
    assert frame_groups(fade, max_difference=4.0).tolist() == [0, 0, 1, 1, 2, 2]
    assert frame_groups(fade, max_difference=0.0).tolist() == [0, 1, 2, 3, 4, 5]
    assert frame_groups([], max_difference=4.0).tolist() == []
    with pytest.raises(ValueError, match="max_difference"):
        frame_groups([red], max_difference=-1)


def test_a_folder_with_images_and_videos(make_project, tmp_path: Path) -> None:
    p = image_project(make_project, every_seconds=1.0)
    folder = tmp_path / "media-in"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8), "green").save(folder / "a.png")
    make_clip(folder / "sub" / "b.mp4", [RED] * 10 + [BLUE] * 10)
    make_clip(folder / "c.avi", [BLUE] * 10)
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    r = p.ingest(folder)
    assert (r.rows_read, r.items_added, r.quarantined) == (1 + 2 + 1, 4, 1)
    assert r.quarantine_reasons == {"unreadable video": 1}
    items = p.items()
    videos = {m.get("video") for m in items["meta"]}
    assert videos == {None, "sub/b.mp4", "c.avi"}
    positions = sorted(items["position"])
    # the image keeps 1; videos sorted (broken.mp4, c.avi, sub/b.mp4) are numbered 1, 2, 3,
    # and a frame's position is its video's base + its frame number + 1
    assert positions == [
        1,
        2 * FRAME_POSITIONS + 1,
        3 * FRAME_POSITIONS + 1,
        3 * FRAME_POSITIONS + 11,
    ]
    assert p.quarantine()["position"].tolist() == [FRAME_POSITIONS + 1]
    assert p.ingest(folder).items_added == 0


def test_a_video_in_a_text_project_says_how_to_make_an_image_project(
    make_project, clip: Path
) -> None:
    p = make_project()  # modality text
    with pytest.raises(IngestError, match="modality is text.*--modality image"):
        p.ingest(clip)
    assert p.status()["items"] == 0 and p.status()["quarantined"] == 0


def test_without_the_decoder_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (8, 8), "green").save(folder / "a.png")
    (folder / "b.mp4").write_bytes(b"\x00" * 64)  # never opened: the check comes first
    p = Project.init(tmp_path / "p", name="v", labels=["a", "b"], modality="image")
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` now raises ImportError
    with pytest.raises(IngestError, match=r"pip install 'labelloop\[video\]'"):
        p.ingest(folder)
    with pytest.raises(IngestError, match=r"pip install 'labelloop\[video\]'"):
        p.ingest(folder / "b.mp4")
    assert p.status()["items"] == 0  # refused before anything was read, the image included
    p.close()


def test_video_settings_are_validated() -> None:
    base = {"name": f"v-{uuid.uuid4().hex[:6]}", "labels": [{"name": "a"}, {"name": "b"}]}
    assert parse_project_config(base, "p.yaml").video.every_seconds == 1.0
    for key, bad in [
        ("every_seconds", 0),
        ("max_frames_per_file", 0),
        ("group_max_difference", -1),
        ("fps", 2),
    ]:
        with pytest.raises(ConfigError, match=rf"video\.{key}"):
            parse_project_config({**base, "video": {key: bad}}, "p.yaml")


def test_unknown_file_types_name_the_video_suffixes(tmp_path: Path) -> None:
    p = Project.init(tmp_path / "p", name="v", labels=["a", "b"], modality="image")
    (tmp_path / "x.xyz").write_text("?")
    with pytest.raises(IngestError, match=r"\.mp4"):
        p.ingest(tmp_path / "x.xyz")
    p.close()
