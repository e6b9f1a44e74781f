"""The imported MCNN-B reproduces crowdcount-mcnn's published accuracy on ShanghaiTech B.

Protocol of crowdcount-mcnn (``src/data_loader.py``, ``src/evaluate_model.py``): the image is
read as grayscale (``cv2.imread(path, 0)``), values 0-255 as float, resized with
``cv2.resize`` to height and width rounded down to multiples of 4 (a no-op for the 1024x768
part B images), and the count is the sum of the density map. Its ground-truth density maps put
one normalised Gaussian per head, so the true count is the number of annotated heads.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.io import loadmat

from streamcount.models.importers import import_checkpoint
from streamcount.models.weights import load_model

PUBLISHED_MAE = 25.1  # crowdcount-mcnn README, data README (B model on part B test)
PUBLISHED_RMSE = 43.6
BATCH = 4  # part B images are all 1024x768


def head_count(gt_file: Path) -> int:
    return len(loadmat(gt_file)["image_info"][0, 0][0, 0][0])


def mcnn_input(image: Path) -> np.ndarray:
    """crowdcount-mcnn's preprocessing: grayscale float 0-255, sides cut to multiples of 4."""
    img = cv2.imread(str(image), 0).astype(np.float32)
    ht, wd = img.shape
    return cv2.resize(img, ((wd // 4) * 4, (ht // 4) * 4))


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMCOUNT_HOME", str(tmp_path / "home"))


@pytest.mark.slow
@pytest.mark.data
def test_mcnn_b_reproduces_published_accuracy(shared_data: Path, shanghaitech: Path) -> None:
    path = import_checkpoint(shared_data / "weights" / "mcnn" / "mcnn_shtechB_110.h5",
                             "mcnn", "mcnn_b")
    net, card = load_model(path)
    split = shanghaitech / "part_B" / "test_data"
    images = sorted((split / "images").glob("IMG_*.jpg"))
    assert len(images) == 316

    truths = [head_count(split / "ground-truth" / f"GT_{im.stem}.mat") for im in images]
    net.to(memory_format=torch.channels_last)  # half the CPU time of NCHW for MCNN
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    estimates: list[float] = []
    try:
        with torch.inference_mode():
            for start in range(0, len(images), BATCH):
                batch = np.stack([mcnn_input(im) for im in images[start:start + BATCH]])
                x = torch.from_numpy(batch)[:, None].contiguous(
                    memory_format=torch.channels_last)
                estimates += net(x).sum(dim=(1, 2, 3)).tolist()
    finally:
        torch.set_num_threads(threads)
    errors = np.asarray(estimates) - np.asarray(truths)

    mae, rmse = float(np.abs(errors).mean()), float(np.sqrt((errors ** 2).mean()))
    print(f"MCNN-B on ShanghaiTech part B test (316 images): MAE {mae:.2f} RMSE {rmse:.2f}")
    assert mae == pytest.approx(PUBLISHED_MAE, abs=0.3)
    assert rmse == pytest.approx(PUBLISHED_RMSE, abs=0.6)
    (metric,) = card.metrics  # the card carries the published numbers it reproduces
    assert (metric.dataset, metric.images) == ("shanghaitech/part_B/test_data", 316)
    assert mae == pytest.approx(metric.mae, abs=0.3)
