"""The offline counting driver on real video and images, with a real (randomly initialised)
SKT 1/4 student saved as a model file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from streamcount.engine.preprocess import plan_input_size, prepare_frame
from streamcount.engine.torch_cpu import TorchBackend
from streamcount.models.card import ModelCard
from streamcount.models.registry import build
from streamcount.models.weights import load_model, save_model
from streamcount.pipeline.offline import count_input
from streamcount.regions import Region

HALVES = [Region("left", ((0, 0), (0.43, 0), (0.43, 1), (0, 1))),
          Region("right", ((0.43, 0), (1, 0), (1, 1), (0.43, 1)))]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "student.safetensors"
    save_model(path, build("csrnet_1_4"), ModelCard.for_arch("csrnet_1_4", "test-student"))
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_vtest_regions_csv_and_summary(vtest_avi: Path, model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = count_input(vtest_avi, model=str(model_file), backend="torch", regions=HALVES,
                          fps=0.25, max_side=320, out_dir=out, progress=False, batch=3)
    header = (out / "counts.csv").read_text().splitlines()[0]
    assert header == "frame,time_s,region,count"
    rows = read_rows(out / "counts.csv")
    frames = sorted({int(r["frame"]) for r in rows})
    assert frames == list(range(0, 795, 40))
    assert len(rows) == 3 * len(frames)
    by_frame: dict[int, dict[str, float]] = {}
    for r in rows:
        by_frame.setdefault(int(r["frame"]), {})[r["region"]] = float(r["count"])
        assert float(r["time_s"]) == pytest.approx(int(r["frame"]) / 10)
    for c in by_frame.values():
        assert list(c) == ["left", "right", "all"]
        assert c["left"] + c["right"] == pytest.approx(c["all"], abs=2e-3)

    # frame 0's count equals the model applied to the resized frame directly
    net, card = load_model(model_file)
    cap = cv2.VideoCapture(str(vtest_avi))
    ok, first = cap.read()
    cap.release()
    assert ok
    size = plan_input_size(576, 768, 320, card.input_multiple)
    assert size == (240, 320)
    density = TorchBackend(net, card).infer(prepare_frame(first, size)[None])[0]
    assert by_frame[0]["all"] == pytest.approx(float(density.sum()), rel=0.01)

    saved = json.loads((out / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert saved["frames_processed"] == len(frames)
    assert saved["input_size"] == [240, 320] and saved["source_size"] == [576, 768]
    assert saved["max_side"] == 320 and saved["fps"] == 0.25 and saved["interrupted"] is False
    assert saved["model"]["name"] == "test-student" and len(saved["model"]["sha256"]) == 64
    assert saved["backend"]["backend"] == "torch"
    assert saved["processing_fps"] > 0
    for name in ("left", "right", "all"):
        values = [c[name] for c in by_frame.values()]
        st = saved["regions"][name]
        assert st["mean"] == pytest.approx(np.mean(values), abs=1e-3)
        assert st["max"] == pytest.approx(max(values), abs=1e-3)
        best = max(by_frame, key=lambda f: by_frame[f][name])
        assert st["max_frame"] == best and st["max_time_s"] == pytest.approx(best / 10)


def test_batching_does_not_change_counts(vtest_avi: Path, model_file: Path, tmp_path: Path) -> None:
    kw = dict(model=str(model_file), backend="torch", fps=0.25, max_side=160, progress=False)
    a = count_input(vtest_avi, out_dir=tmp_path / "a", batch=1, **kw)
    b = count_input(vtest_avi, out_dir=tmp_path / "b", batch=3, **kw)
    ra, rb = read_rows(tmp_path / "a" / "counts.csv"), read_rows(tmp_path / "b" / "counts.csv")
    assert [r["frame"] for r in ra] == [r["frame"] for r in rb] and len(ra) == 20
    np.testing.assert_allclose([float(r["count"]) for r in ra], [float(r["count"]) for r in rb],
                               rtol=1e-4)
    assert a["regions"]["all"]["max_frame"] == b["regions"]["all"]["max_frame"]


def test_folder_of_images_has_file_column(model_file: Path, tmp_path: Path,
                                          shanghaitech: Path) -> None:
    src = shanghaitech / "part_B" / "test_data" / "images"
    folder = tmp_path / "imgs"
    folder.mkdir()
    for n in (1, 2, 10):  # real images; copies only in tmp
        (folder / f"IMG_{n}.jpg").write_bytes((src / f"IMG_{n}.jpg").read_bytes())
    # one image of another size: a second input size
    img = cv2.imread(str(src / "IMG_3.jpg"))
    cv2.imwrite(str(folder / "IMG_4.png"), cv2.resize(img, (300, 200)))
    out = tmp_path / "out"
    summary = count_input(folder, model=str(model_file), backend="torch", max_side=256,
                          out_dir=out, progress=False, batch=4)
    assert (out / "counts.csv").read_text().splitlines()[0] == "frame,time_s,region,count,file"
    rows = read_rows(out / "counts.csv")
    assert [(r["frame"], r["file"]) for r in rows] == [
        ("0", "IMG_1.jpg"), ("1", "IMG_2.jpg"), ("2", "IMG_4.png"), ("3", "IMG_10.jpg")]
    assert summary["kind"] == "folder" and summary["frames_processed"] == 4
    assert summary["input_sizes"] is not None and [192, 256] in summary["input_sizes"]
    assert summary["regions"]["all"]["max_file"] in {"IMG_1.jpg", "IMG_2.jpg", "IMG_4.png",
                                                     "IMG_10.jpg"}


def test_annotated_video_and_plot(vtest_avi: Path, model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = count_input(vtest_avi, model=str(model_file), backend="torch", regions=HALVES,
                          fps=0.5, max_side=320, out_dir=out, annotate=True, plot=True,
                          progress=False)
    video = out / "annotated.mp4"
    assert summary["outputs"]["video"] == str(video)
    with av.open(str(video)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name in ("h264", "mpeg4")
        decoded = [f.to_ndarray(format="bgr24") for f in c.decode(s)]
    assert len(decoded) == summary["frames_processed"] == 40
    assert decoded[0].shape == (240, 320, 3)
    assert float(decoded[0].std()) > 5  # a picture, not a blank frame
    png = cv2.imread(str(out / "counts.png"))
    assert png is not None and png.shape[0] > 100 and png.shape[1] > 100


def test_single_image(model_file: Path, tmp_path: Path) -> None:
    img = tmp_path / "crowd.jpg"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 255, (100, 150, 3), np.uint8))
    summary = count_input(img, model=str(model_file), backend="torch", out_dir=tmp_path / "o",
                          progress=False)
    assert summary["frames_processed"] == 1 and summary["input_size"] == [96, 144]
    rows = read_rows(tmp_path / "o" / "counts.csv")
    assert rows[0]["frame"] == "0" and rows[0]["region"] == "all"


def test_backend_instance_is_reused(model_file: Path, tmp_path: Path) -> None:
    img = tmp_path / "crowd.png"
    cv2.imwrite(str(img), np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8))
    backend = TorchBackend(*load_model(model_file))
    a = count_input(img, backend_instance=backend, out_dir=tmp_path / "a", progress=False)
    b = count_input(img, model=str(model_file), backend="torch", out_dir=tmp_path / "b",
                    progress=False)
    assert a["model"]["path"] is None and b["model"]["path"] == str(model_file)
    assert a["regions"]["all"]["mean"] == pytest.approx(b["regions"]["all"]["mean"], rel=1e-5)


@pytest.mark.slow
def test_auto_never_keeps_an_int8_model_that_miscounts(vtest_avi: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A model with one channel scaled up 300x (and the next layer scaled down: the same
    function in fp32) cannot be quantised per tensor; ``auto`` must notice and use a float
    backend whose counts match fp32."""
    monkeypatch.setenv("STREAMCOUNT_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(1)
    net = build("csrnet_1_4").eval()
    with torch.no_grad():
        a, b = net.conv3_0[0], net.conv3_1[0]
        a.weight[0] *= 300.0
        a.bias[0] *= 300.0
        b.weight[:, 0] /= 300.0
    path = tmp_path / "skewed.safetensors"
    save_model(path, net, ModelCard.for_arch("csrnet_1_4", "skewed"))
    summary = count_input(vtest_avi, model=str(path), fps=0.5, max_side=320,
                          out_dir=tmp_path / "out", progress=False)
    assert summary["backend"]["precision"] in ("bf16", "fp32"), summary["backend"]
    # the chosen backend's counts match fp32 torch on the same (first) frame
    net2, card = load_model(path)
    cap = cv2.VideoCapture(str(vtest_avi))
    ok, first = cap.read()
    cap.release()
    x = prepare_frame(first, (240, 320))[None]
    ref = float(TorchBackend(net2, card).infer(x)[0].sum())
    got = float(read_rows(tmp_path / "out" / "counts.csv")[0]["count"])
    assert got == pytest.approx(ref, rel=0.03)  # includes the decoders' colour conversion


def test_auto_deviation_is_relative_for_crowds_and_in_people_for_sparse_scenes() -> None:
    from streamcount.pipeline.offline import AUTO_MIN_COUNT, auto_deviation

    # a crowd: plain relative difference
    assert auto_deviation([100.0, 200.0], [102.0, 196.0]) == pytest.approx(0.02)
    # a sparse scene: 0.3 person off at 10 people is 3 % relative, but 0.3/20 = 1.5 % here
    assert auto_deviation([10.0], [10.3]) == pytest.approx(0.3 / AUTO_MIN_COUNT)
    # 1 person off at 10 people is still too much (5 %)
    assert auto_deviation([10.0], [11.0]) > 0.02
