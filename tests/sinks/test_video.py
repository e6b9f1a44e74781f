"""annotated.mp4: heat-map rendering and a decodable video with every frame."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from streamcount.regions import Region
from streamcount.sinks.video import BOX_COLOUR, AnnotatedVideoSink, HeatmapRenderer, pick_codec

BOX = Region("box", ((0.5, 0.5), (0.9, 0.5), (0.9, 0.9), (0.5, 0.9)))


def test_heatmap_marks_the_dense_area() -> None:
    image = np.full((80, 120, 3), 100, np.uint8)
    density = np.zeros((10, 15), np.float32)
    density[1:3, 1:3] = 0.5  # dense top-left corner
    out = HeatmapRenderer([]).render(image, density, {"all": 2.0})
    changed = np.abs(out.astype(int) - image).sum(axis=2)
    assert changed[12:20, 12:20].mean() > 60  # blended with a hot colour
    assert changed[60:, 80:].mean() == 0  # nothing where the density is zero
    np.testing.assert_array_equal(image, 100)  # the input is not modified


def test_region_outline_and_labels_are_drawn() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    out = HeatmapRenderer([BOX]).render(image, np.zeros((12, 12), np.float32),
                                        {"box": 1.0, "all": 3.0}, time_s=1.5)
    # the outline's bottom edge (y = 0.9 * 99 = 89) is drawn, the inside stays dark
    assert out[89, 60:80].max() > 200
    assert out[70, 60:80].max() == 0
    assert out[5:30, 5:60].max() > 200  # the "all" label


def test_detection_boxes_and_method_are_drawn(tmp_path: Path) -> None:
    image = np.zeros((100, 160, 3), np.uint8)
    boxes = np.array([[100, 40, 120, 90]], np.float32)
    plain = HeatmapRenderer([]).render(image, np.zeros((12, 20), np.float32), {"all": 1.0})
    out = HeatmapRenderer([]).render(image, np.zeros((12, 20), np.float32), {"all": 1.0},
                                     boxes=boxes, method="detect")
    assert tuple(out[65, 100]) == BOX_COLOUR and tuple(out[90, 110]) == BOX_COLOUR
    assert out[65, 110].max() == 0  # inside the box: untouched
    # the label grew by " (detect)"
    assert (out[5:30, :].max(axis=2) > 200).sum() > (plain[5:30, :].max(axis=2) > 200).sum()
    sink = AnnotatedVideoSink(tmp_path / "v.mp4", (50, 80), 5.0, [])
    sink.write(image, np.zeros((12, 20), np.float32), {"all": 1.0}, 0.0, boxes, "hybrid")
    sink.close()
    assert sink.error is None and sink.frames == 1


@pytest.mark.parametrize("codec", [pick_codec(), "mpeg4"])
def test_video_is_decodable_with_every_frame(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "annotated.mp4"
    sink = AnnotatedVideoSink(path, (64, 96), 10.0, [BOX], codec=codec)
    rng = np.random.default_rng(0)
    for i in range(12):
        sink.write(rng.integers(0, 255, (64, 96, 3), np.uint8),
                   rng.random((8, 12), dtype=np.float32), {"box": 1.0, "all": float(i)}, i / 10)
    sink.close()
    sink.close()
    assert sink.error is None and sink.frames == 12
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f for f in c.decode(s)]
        assert s.codec_context.name == ("h264" if codec == "libx264" else codec)
        assert float(s.average_rate) == pytest.approx(10.0)
    assert len(frames) == 12 and (frames[0].height, frames[0].width) == (64, 96)


def test_frames_of_another_size_are_resized(tmp_path: Path) -> None:
    sink = AnnotatedVideoSink(tmp_path / "v.mp4", (32, 48), 5.0, [])
    sink.write(np.zeros((40, 60, 3), np.uint8), np.zeros((5, 7), np.float32), {"all": 0.0})
    sink.close()
    assert sink.error is None and sink.frames == 1
