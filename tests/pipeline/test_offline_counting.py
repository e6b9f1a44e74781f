"""``count_input(counting=...)``: the method column, the summary's counting section, and the
three methods on real video with the packaged detector and the default density model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from streamcount.errors import InputError, ModelError
from streamcount.pipeline.offline import count_input
from streamcount.regions import Region

HALVES = [Region("left", ((0, 0), (0.5, 0), (0.5, 1), (0, 1))),
          Region("right", ((0.5, 0), (1, 0), (1, 1), (0.5, 1)))]


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "counts.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_methods_on_vtest(vtest_avi: Path, model_file: Path, tmp_path: Path) -> None:
    runs = {}
    for counting in ("auto", "density", "detect", None):
        out = tmp_path / str(counting)
        summary = count_input(vtest_avi, model=str(model_file), backend="torch", fps=0.5,
                              regions=HALVES, out_dir=out, progress=False, counting=counting)
        runs[counting] = (summary, _rows(out))
    summary, rows = runs["auto"]
    assert list(rows[0]) == ["frame", "time_s", "region", "count", "method"]
    assert {r["method"] for r in rows} <= {"detect", "density", "hybrid"}
    counting = summary["counting"]
    assert counting["counting"] == "auto" and counting["detector"]["model"] == "yolo_fastest_body"
    assert sum(counting["methods"].values()) == summary["frames_processed"] == 40
    assert json.loads((tmp_path / "auto" / "summary.json").read_text())["counting"] == counting
    # regions integrate the count map: the halves add up to the whole frame
    by_frame: dict[str, dict[str, float]] = {}
    for r in rows:
        by_frame.setdefault(r["frame"], {})[r["region"]] = float(r["count"])
    for c in by_frame.values():
        assert c["left"] + c["right"] == pytest.approx(c["all"], abs=2e-3)

    _, detect_rows = runs["detect"]
    assert {r["method"] for r in detect_rows} == {"detect"}
    assert all(float(r["count"]).is_integer() for r in detect_rows)
    _, density_rows = runs["density"]
    plain_summary, plain_rows = runs[None]
    assert {r["method"] for r in density_rows} == {"density"}
    assert "method" not in plain_rows[0] and "counting" not in plain_summary
    assert [r["count"] for r in density_rows] == [r["count"] for r in plain_rows]


def test_bad_counting_and_detector_as_density_model(vtest_avi: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown counting method 'magic'"):
        count_input(vtest_avi, counting="magic", out_dir=tmp_path, progress=False)
    with pytest.raises(ModelError, match="is a detect model"):
        count_input(vtest_avi, model="yolo_fastest_body", backend="torch", out_dir=tmp_path,
                    progress=False)


@pytest.mark.slow
def test_auto_scale_on_video_only(vtest_avi: Path, model_file: Path, tmp_path: Path) -> None:
    import av
    import cv2

    summary = count_input(vtest_avi, model=str(model_file), backend="torch", fps=1,
                          out_dir=tmp_path / "video", progress=False, counting="auto",
                          scale="auto")
    scale = summary["counting"]["scale"]
    assert 0.3 < scale["scale"] < 0.9 and scale["frames"] >= 5 and not scale["detect_only"]
    h, w = summary["input_size"]
    assert (h, w) == (h // 8 * 8, w // 8 * 8) and w < 768 and h < 576
    rows = _rows(tmp_path / "video")
    assert len(rows) == summary["frames_processed"] == 80

    folder = tmp_path / "images"
    folder.mkdir()
    with av.open(str(vtest_avi)) as c:
        for i, f in zip(range(3), c.decode(video=0)):
            cv2.imwrite(str(folder / f"{i}.png"), f.to_ndarray(format="bgr24"))
    summary = count_input(folder, model=str(model_file), backend="torch", progress=False,
                          out_dir=tmp_path / "folder", counting="auto", scale="auto")
    assert "scale" not in summary["counting"] and summary["input_size"] == [576, 768]
    with pytest.raises(InputError, match="unknown scale policy"):
        count_input(vtest_avi, scale="half", counting="auto", out_dir=tmp_path, progress=False)


@pytest.mark.slow
def test_annotated_video_with_detections(vtest_avi: Path, model_file: Path,
                                         tmp_path: Path) -> None:
    import av

    summary = count_input(vtest_avi, model=str(model_file), backend="torch", fps=0.2,
                          out_dir=tmp_path, progress=False, counting="auto", annotate=True)
    with av.open(summary["outputs"]["video"]) as c:
        assert sum(1 for _ in c.decode(video=0)) == summary["frames_processed"] == 16
