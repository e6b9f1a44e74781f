"""Dataset loaders on tiny synthetic datasets in each layout; a real ShanghaiTech smoke test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.io import savemat

from streamcount.errors import InputError
from tests.training.synth import PTS
from tests.training.synth import make_image as _img
from tests.training.synth import make_shanghaitech as _sht
from training.datasets import default_rule, load_items
from training.datasets.common import read_image_rgb
from training.datasets.density import SHA_RULE, SHB_RULE, DensityCache
from training.datasets.transforms import CropPolicy, EvalImages, TrainCrops


def test_shanghaitech_layout(tmp_path):
    root = _sht(tmp_path)
    items = load_items("shanghaitech", root, "part_B/train_data")
    assert [it.image_id for it in items] == ["train_data/IMG_1", "train_data/IMG_2",
                                             "train_data/IMG_3"]
    assert [it.count for it in items] == [1, 2, 3]
    np.testing.assert_allclose(items[2].points, PTS)
    assert items[0].dataset == "shanghaitech/part_B"
    assert default_rule("shanghaitech", "part_B/train_data") == SHB_RULE
    assert default_rule("shanghaitech", "part_A/train_data") == SHA_RULE


def test_shanghaitech_missing_annotation_named(tmp_path):
    root = _sht(tmp_path)
    (root / "part_B/train_data/ground-truth/GT_IMG_2.mat").unlink()
    with pytest.raises(InputError, match="GT_IMG_2.mat: annotation missing"):
        load_items("shanghaitech", root, "part_B/train_data")


def test_point_outside_image_named(tmp_path):
    root = _sht(tmp_path, pts=np.array([[10.0, 10.0], [64.9, 48.9], [70.0, 10.0]]))
    # IMG_2's points are within the 1 px tolerance; IMG_3 has x = 70 in a 64 px wide image
    with pytest.raises(InputError, match=r"GT_IMG_3.mat: point 2 at \(70.0, 10.0\)"):
        load_items("shanghaitech", root, "part_B/train_data")


def test_unreadable_image_named(tmp_path):
    root = _sht(tmp_path)
    (root / "part_B/train_data/images/IMG_3.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="IMG_3.jpg: unreadable image"):
        load_items("shanghaitech", root, "part_B/train_data")


def test_grayscale_converted_to_rgb(tmp_path):
    _img(tmp_path / "g.png", gray=True)
    a = read_image_rgb(tmp_path / "g.png")
    assert a.shape == (48, 64, 3) and np.array_equal(a[..., 0], a[..., 2])


def test_ucf_qnrf_and_cc50(tmp_path):
    q = tmp_path / "qnrf"
    for i in (1, 2):
        _img(q / "Train" / f"img_000{i}.jpg")
        savemat(str(q / "Train" / f"img_000{i}_ann.mat"), {"annPoints": PTS[:i]})
    items = load_items("ucf_qnrf", q, "Train")
    assert [it.count for it in items] == [1, 2]
    assert items[0].image_id == "Train/img_0001"
    c = tmp_path / "cc50"
    for i in range(1, 13):
        _img(c / f"{i}.jpg", gray=True)
        savemat(str(c / f"{i}_ann.mat"), {"annPoints": PTS})
    assert len(load_items("ucf_cc_50", c, "all")) == 12
    fold1 = [it.image_id for it in load_items("ucf_cc_50", c, "fold1_test")]
    assert fold1 == [str(i) for i in range(1, 11)]
    assert [it.image_id for it in load_items("ucf_cc_50", c, "fold2_test")] == ["11", "12"]
    (c / "5_ann.mat").unlink()
    with pytest.raises(InputError, match="5_ann.mat: annotation missing"):
        load_items("ucf_cc_50", c, "all")


def test_jhu(tmp_path):
    d = tmp_path / "jhu" / "train"
    _img(d / "images" / "0001.jpg")
    _img(d / "images" / "0002.jpg")
    (d / "gt").mkdir()
    (d / "gt" / "0001.txt").write_text("10 12 5 5 0 0\n30 20 6 6 1 0\n")
    (d / "gt" / "0002.txt").write_text("")
    items = load_items("jhu", tmp_path / "jhu", "train")
    assert [it.count for it in items] == [2, 0]
    (d / "gt" / "0002.txt").write_text("10 x\n")
    with pytest.raises(InputError, match=r"0002.txt:1: expected"):
        load_items("jhu", tmp_path / "jhu", "train")


def test_nwpu(tmp_path):
    r = tmp_path / "nwpu"
    for s in ("0001", "0002", "0003"):
        _img(r / "images" / f"{s}.jpg")
        (r / "jsons").mkdir(parents=True, exist_ok=True)
        (r / "jsons" / f"{s}.json").write_text(json.dumps({"img_id": s, "human_num": 3,
                                                           "points": PTS.tolist()}))
    (r / "train.txt").write_text("0001 1 2\n0003 0 1\n")
    assert [it.image_id for it in load_items("nwpu", r, "train")] == ["0001", "0003"]
    assert len(load_items("nwpu", r, "all")) == 3
    (r / "jsons" / "0003.json").write_text("{}")
    with pytest.raises(InputError, match="0003.json: not an NWPU annotation"):
        load_items("nwpu", r, "train")


def test_points_folder(tmp_path):
    d = tmp_path / "mine" / "cam1"
    _img(d / "a.jpg")
    (d / "a.csv").write_text("x,y\n10,12\n30,20\n")
    _img(d / "b.png")
    (d / "annotations").mkdir()
    (d / "annotations" / "b.json").write_text(json.dumps({"points": [{"x": 5, "y": 6}]}))
    items = load_items("points", tmp_path / "mine", "cam1")
    assert [(it.image_id, it.count) for it in items] == [("a", 2), ("b", 1)]
    _img(d / "c.jpg")
    with pytest.raises(InputError, match=r"c.jpg: no point file"):
        load_items("points", tmp_path / "mine", "cam1")


def test_log_scale_draws_shrink_as_often_as_they_enlarge(tmp_path):
    root = _sht(tmp_path, n=1)
    items = load_items("shanghaitech", root, "part_B/train_data")
    cache = DensityCache(tmp_path / "cache")
    rng = np.random.default_rng(0)
    draws = {}
    for dist in ("uniform", "log"):
        ds = TrainCrops(items, SHB_RULE, cache, CropPolicy("fixed", crop_size=32, scale=(0.5, 2.0),
                                                          scale_dist=dist), seed=1)
        draws[dist] = np.array([ds.draw_scale(rng) for _ in range(4000)])
        assert draws[dist].min() >= 0.5 and draws[dist].max() <= 2.0
    # uniform in s: 2/3 of the crops enlarge people; uniform in log s: half of them
    assert abs((draws["uniform"] > 1).mean() - 2 / 3) < 0.03
    assert abs((draws["log"] > 1).mean() - 0.5) < 0.03
    assert abs(np.median(np.log(draws["log"]))) < 0.05


def test_cubic_upscale_enlarges_windows_bicubically(tmp_path):
    """``upscale="cubic"``: an enlarged window (s > 1) is resized as cv2's bicubic would resize
    the frame; shrunk windows stay area-averaged; the target is the same either way."""
    import cv2

    root = _sht(tmp_path, n=1)
    items = load_items("shanghaitech", root, "part_B/train_data")
    cache = DensityCache(tmp_path / "cache")
    crops = {}
    for up in ("linear", "cubic"):
        ds = TrainCrops(items, SHB_RULE, cache, CropPolicy("fixed", crop_size=32, scale=(2.0, 2.0),
                                                          flip=0.0, upscale=up), seed=3)
        rng = np.random.default_rng([3, 0, 0, 1])  # the rng of the dataset's first call
        win = 16
        img, _dens = ds.store.get(0)
        h, w = img.shape[:2]
        assert ds.draw_scale(rng) == 2.0
        dx, dy = int(rng.integers(0, w - win + 1)), int(rng.integers(0, h - win + 1))
        x, y, _, _ = ds[0]
        interp = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}[up]
        want = cv2.resize(img[dy:dy + win, dx:dx + win], (32, 32), interpolation=interp)
        np.testing.assert_array_equal(x.numpy().transpose(1, 2, 0), want)
        crops[up] = (x, y)
    assert not torch.equal(crops["linear"][0], crops["cubic"][0])
    torch.testing.assert_close(crops["linear"][1], crops["cubic"][1])
    with pytest.raises(ValueError, match="upscale"):
        TrainCrops(items, SHB_RULE, cache, CropPolicy("fixed", upscale="nearest"))


def test_train_crops_and_eval_images(tmp_path):
    root = _sht(tmp_path, n=2)
    items = load_items("shanghaitech", root, "part_B/train_data")
    cache = DensityCache(tmp_path / "cache")
    ds = TrainCrops(items, SHB_RULE, cache, CropPolicy("fixed", crop_size=32, scale=(0.5, 1.0),
                                                      replicate=2), seed=1)
    assert len(ds) == 4
    x, y, c, domain = ds[1]
    assert x.dtype == torch.uint8 and x.shape == (3, 32, 32) and y.shape == (1, 4, 4)
    assert ds.domains == ["shanghaitech/part_B"] and domain == 0
    ds = TrainCrops(items, SHB_RULE, cache, CropPolicy("ratio"), seed=1)
    x, y, _, _ = ds[0]
    assert y.shape[1:] == (-(-x.shape[1] // 8), -(-x.shape[2] // 8))
    ev = EvalImages(items, SHB_RULE, cache, max_side=None)
    x, y, count = ev[1]
    assert x.shape == (3, 48, 64) and y.shape == (1, 6, 8) and count == 2.0
    assert cache.hits > 0


def test_real_shanghaitech_smoke(shanghaitech, tmp_path):
    items = load_items("shanghaitech", shanghaitech, "part_B/test_data", check_images=False)
    assert len(items) == 316
    first = items[0]
    assert first.image_id == "test_data/IMG_1" and first.count > 0
    ev = EvalImages(items[:1], SHB_RULE, DensityCache(tmp_path), max_side=960)
    x, y, count = ev[0]
    assert x.shape == (3, 720, 960) and y.shape == (1, 90, 120)
    assert count == first.count
    # sigma 15 loses some mass at the border; the target keeps most of it
    assert 0.8 * count < float(y.sum()) <= count * 1.02


def test_crops_on_people_contain_a_head(tmp_path):
    """``on_people=1``: every fixed crop's window holds an annotated head, so a crowd in one
    corner of a large image is in every crop; uniform windows mostly miss it."""
    pts = np.array([[20.0 + (i % 4) * 3, 18.0 + (i // 4) * 3] for i in range(12)])
    root = _sht(tmp_path, n=1, pts=pts, h=240, w=320)
    items = load_items("shanghaitech", root, "part_B/train_data")
    cache = DensityCache(tmp_path / "cache")
    sums = {}
    for p in (0.0, 1.0):
        ds = TrainCrops(items, SHB_RULE, cache, CropPolicy(
            "fixed", crop_size=32, scale=(0.5, 2.0), flip=0.0, replicate=200, on_people=p),
            seed=2)
        sums[p] = np.array([float(ds[k][1].sum()) for k in range(len(ds))])
    # SHB's sigma-15 blur spreads each head over a disc larger than the smaller windows
    assert sums[1.0].min() > 0.1                  # part of the crowd in every window
    assert np.median(sums[0.0]) < 0.01 and (sums[0.0] > 0.1).mean() < 0.1  # mostly empty
    # the window around a coordinate stays inside the image and holds the coordinate
    rng = np.random.default_rng(0)
    for p, win, n in [(0, 16, 100), (99, 16, 100), (50, 100, 100), (150.7, 16, 100)]:
        for _ in range(50):
            s = TrainCrops._around(p, win, n, rng)
            assert 0 <= s <= n - win and s <= min(int(p), n - 1) < s + win
