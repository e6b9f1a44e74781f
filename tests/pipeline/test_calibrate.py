"""streamcount calibrate: the truth table, candidate sizes, and the right scale on resized
ShanghaiTech B images (real images, real model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamcount.errors import InputError
from streamcount.pipeline.calibrate import candidate_sides, read_frames, read_truth

SHB_IMAGES = (1, 5, 9, 13, 17, 21)


def test_truth_table(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("frame,count\n# comment\n0,3\n12, 4.5\nIMG_1.jpg,7\n")
    rows = read_truth(p)
    assert [(r.frame, r.count) for r in rows] == [(0, 3.0), (12, 4.5), ("IMG_1.jpg", 7.0)]


@pytest.mark.parametrize("text, match", [
    ("f,c\n1,2\n", "header 'frame,count'"),
    ("frame,count\n", "no counted frames"),
    ("frame,count\n1,two\n", "row 2: count 'two' is not a number"),
    ("frame,count\n1,-1\n", "row 2: count must be a non-negative"),
    ("frame,count\n1,1\n1,2\n", "row 3: frame 1 appears twice"),
])
def test_truth_table_problems_name_file_and_row(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "t.csv"
    p.write_text(text)
    with pytest.raises(InputError, match=match):
        read_truth(p)


def test_candidates_never_upscale_and_respect_the_multiple() -> None:
    sides = candidate_sides(1024)
    assert sides[0] == 1024 and sides == sorted(set(sides), reverse=True)
    assert all(s % 8 == 0 and 96 <= s <= 1024 for s in sides)


def test_frames_by_index_from_a_real_video(vtest_avi: Path, tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("frame,count\n30,5\n3,4\n")
    frames = read_frames(vtest_avi, read_truth(p))
    assert [f.shape for f in frames] == [(576, 768, 3)] * 2
    assert not np.array_equal(frames[0], frames[1])
    p.write_text("frame,count\n999999,5\n")
    with pytest.raises(InputError, match="frames not in the input: 999999"):
        read_frames(vtest_avi, read_truth(p))


def _shb_set(shanghaitech: Path, folder: Path, factor: float) -> Path:
    """SHB test images resized by ``factor``, and their annotated counts."""
    from scipy.io import loadmat

    folder.mkdir()
    rows = ["frame,count"]
    for i in SHB_IMAGES:
        img = cv2.imread(str(shanghaitech / f"part_B/test_data/images/IMG_{i}.jpg"))
        gt = loadmat(str(shanghaitech / f"part_B/test_data/ground-truth/GT_IMG_{i}.mat"))
        n = len(gt["image_info"][0, 0][0, 0][0])
        if factor != 1.0:
            img = cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"IMG_{i}.png"), img)
        rows.append(f"IMG_{i}.png,{n}")
    counts = folder.parent / f"{folder.name}.csv"
    counts.write_text("\n".join(rows) + "\n")
    return counts


def _calibrate(folder: Path, counts: Path, sides: str, *extra: str) -> str:
    res = subprocess.run([sys.executable, "-m", "streamcount", "calibrate", str(folder),
                          "--counts", str(counts), "--sides", sides, *extra],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return res.stdout


def _chosen(out: str) -> int:
    line = next(ln for ln in out.splitlines() if ln.startswith("chosen max_side"))
    return int(line.split()[2].rstrip(":"))


@pytest.mark.slow
def test_picks_the_right_scale_on_enlarged_shb_images(shanghaitech: Path,
                                                      tmp_path: Path) -> None:
    """People enlarged 2x: the right input is the one that brings them back to their native
    size, whatever the model's own best size is on the native images."""
    native = _shb_set(shanghaitech, tmp_path / "x1", 1.0)
    best_native = _chosen(_calibrate(tmp_path / "x1", native, "1024,768,512"))
    enlarged = _shb_set(shanghaitech, tmp_path / "x2", 2.0)
    cfg = tmp_path / "service.yaml"
    cfg.write_text("cameras:\n  - name: cam\n    source: rtsp://h/s\n")
    out = _calibrate(tmp_path / "x2", enlarged, "2048,1024,768,512", "--config", str(cfg),
                     "--camera", "cam")
    assert _chosen(out) == best_native, out
    assert f"max_side: {best_native}  # streamcount calibrate" in cfg.read_text()
    if "gain" not in out:  # a scale fits alone: no gain written, and an earlier one is undone
        assert "gain" not in cfg.read_text()
        cfg.write_text("cameras:\n  - name: cam\n    gain: 1.7\n    source: rtsp://h/s\n")
        _calibrate(tmp_path / "x2", enlarged, "2048,1024,768,512", "--config", str(cfg),
                   "--camera", "cam")
        text = cfg.read_text()
        assert "gain: 1.0  # streamcount calibrate: none needed" in text, text
        from streamcount.config.loader import load_config
        assert load_config(cfg).cameras[0].gain == 1.0
