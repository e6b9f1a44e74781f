"""Training crops and evaluation samples: images with stride-8 density targets.

Two crop policies:

- ``ratio`` (the official ``image.py``, skt.md section 3.2): a crop with one ratio
  r ~ U(lo, hi) of both sides at a random position, horizontal flip with probability ``flip``,
  target = cubic resize to the ceil/8 size x 64. Variable sizes, so batch size 1.
- ``fixed`` (CPU recipes): a square window of ``crop_size / s`` pixels with s ~ U(lo, hi)
  (scale augmentation; s < 1 shows the model smaller heads, as on downscaled frames), resized to
  ``crop_size`` (area interpolation), target = cubic resize of the window's density to
  ``crop_size / 8`` scaled by the area ratio (sum preserved). Fixed sizes, so any batch size.

Training samples are ``(image uint8 3 x H x W RGB tensor, target float32 1 x h x w tensor, count,
domain)``, ``domain`` the index of the image's dataset in :attr:`TrainCrops.domains` (routes a
crop to its dataset's teacher in SKT); evaluation samples have no domain.
Normalisation (ImageNet mean/std) happens in the task, from the architecture's registry entry.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from streamcount.engine.preprocess import plan_input_size
from training.datasets.common import AnnotatedImage, read_image_rgb
from training.datasets.density import DensityCache, DensityRule, resize_density, stride_target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CropPolicy:
    """How training crops are cut (see the module docstring)."""

    mode: str = "ratio"  # "ratio" (official) or "fixed"
    ratio: tuple[float, float] = (0.5, 1.0)
    crop_size: int = 384
    scale: tuple[float, float] = (1.0, 1.0)
    flip: float = 0.2
    replicate: int = 4  # the list is repeated this many times per epoch (official x4)
    #: how ``scale`` is drawn: "uniform" in s, or "log" (uniform in log s: as many crops
    #: shrink people by a factor k as enlarge them by k, so the mean head size is native)
    scale_dist: str = "uniform"
    #: how a window is enlarged to ``crop_size`` (s > 1): "linear" or "cubic" (as a frame is
    #: upscaled by cv2.resize's bicubic default, e.g. in the scale test)
    upscale: str = "linear"
    #: fixed crops: the probability that a window is placed around a random annotated head
    #: (uniformly among the positions that contain it) instead of uniformly over the image.
    #: Crops then meet people in proportion to their number, so dense crowds, a few percent of
    #: an image's area but most of its count, are trained on as often as they are counted
    on_people: float = 0.0


_UPSCALE = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


class _Store:
    """Images and full-resolution density maps, loaded once and kept in memory."""

    def __init__(self, items: Sequence[AnnotatedImage], rule: DensityRule,
                 cache: DensityCache, preload: bool, in_memory: bool = True) -> None:
        self.items = list(items)
        self.rule = rule
        self.cache = cache
        self.in_memory = in_memory
        self._img: dict[int, np.ndarray] = {}
        self._dens: dict[int, np.ndarray] = {}
        # render (and cache on disk) every map up front; keep them only if in_memory
        if preload or not in_memory:
            # decoding and rendering release the GIL: a few threads fill the store in parallel
            n = min(8, os.cpu_count() or 1, max(1, len(self.items)))
            with ThreadPoolExecutor(max_workers=n) as pool:
                list(pool.map(self.get, range(len(self.items))))
            if not in_memory:
                self._img.clear()
                self._dens.clear()

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i in self._img:
            return self._img[i], self._dens[i]
        it = self.items[i]
        img = read_image_rgb(it.image_path)
        h, w = img.shape[:2]
        dens = self.cache.get(it.dataset, it.image_id, it.points, h, w, self.rule)
        if self.in_memory:
            self._img[i], self._dens[i] = img, dens
        return img, dens


class TrainCrops(Dataset):
    """Random training crops with stride-8 targets (one epoch = ``replicate`` x images)."""

    def __init__(self, items: Sequence[AnnotatedImage], rule: DensityRule, cache: DensityCache,
                 policy: CropPolicy, stride: int = 8, seed: int = 0, preload: bool = True,
                 in_memory: bool = True) -> None:
        self.store = _Store(items, rule, cache, preload, in_memory)
        self.policy = policy
        if policy.upscale not in _UPSCALE:
            raise ValueError(f"unknown upscale {policy.upscale!r} (choose from {sorted(_UPSCALE)})")
        #: the datasets of the items, sorted; a sample's ``domain`` indexes this list
        self.domains: list[str] = sorted({it.dataset for it in self.store.items})
        self._domain = [self.domains.index(it.dataset) for it in self.store.items]
        self.stride = stride
        self.seed = seed
        self.epoch = 0
        self._calls = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.store.items) * self.policy.replicate

    def _rng(self, index: int) -> np.random.Generator:
        self._calls += 1
        return np.random.default_rng([self.seed, self.epoch, index, self._calls])

    def __getitem__(self, index: int):
        i = index % len(self.store.items)
        img, dens = self.store.get(i)
        rng = self._rng(index)
        p = self.policy
        if p.mode == "ratio":
            img_c, tgt = self._ratio_crop(img, dens, rng)
        elif p.mode == "fixed":
            img_c, tgt = self._fixed_crop(img, dens, rng, self.store.items[i].points)
        else:
            raise ValueError(f"unknown crop mode {p.mode!r}")
        if rng.random() < p.flip:
            img_c = img_c[:, ::-1]
            tgt = tgt[:, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(img_c.transpose(2, 0, 1)))
        y = torch.from_numpy(np.ascontiguousarray(tgt))[None]
        return x, y, float(tgt.sum()), self._domain[i]

    def _ratio_crop(self, img: np.ndarray, dens: np.ndarray, rng: np.random.Generator):
        h, w = img.shape[:2]
        r = rng.uniform(*self.policy.ratio)
        cw, ch = max(self.stride, int(w * r)), max(self.stride, int(h * r))
        dx = int(rng.random() * (w - cw))
        dy = int(rng.random() * (h - ch))
        img_c = img[dy:dy + ch, dx:dx + cw]
        tgt = stride_target(dens[dy:dy + ch, dx:dx + cw], self.stride)
        return img_c, tgt

    @staticmethod
    def _around(p: float, win: int, n: int, rng: np.random.Generator) -> int:
        """A window start in ``[0, n - win]`` whose window ``[start, start + win)`` holds the
        coordinate ``p`` (uniform among those), on an axis of length ``n``."""
        p = min(max(int(p), 0), n - 1)
        lo, hi = max(0, p - win + 1), min(p, n - win)
        return int(rng.integers(lo, hi + 1)) if hi >= lo else int(rng.integers(0, n - win + 1))

    def draw_scale(self, rng: np.random.Generator) -> float:
        """One crop's scale factor s (people are resized by s) from ``policy.scale``."""
        lo, hi = self.policy.scale
        if self.policy.scale_dist == "log":
            return math.exp(rng.uniform(math.log(lo), math.log(hi)))
        return float(rng.uniform(lo, hi))

    def _fixed_crop(self, img: np.ndarray, dens: np.ndarray, rng: np.random.Generator,
                    points: np.ndarray | None = None):
        h, w = img.shape[:2]
        c = self.policy.crop_size
        s = self.draw_scale(rng)
        win = int(round(c / s))
        if win > min(h, w):  # image too small for this scale: use the largest square it has
            win = min(h, w)
        if (self.policy.on_people and points is not None and len(points)
                and rng.random() < self.policy.on_people):
            px, py = points[int(rng.integers(len(points)))]
            dx, dy = (self._around(p, win, n, rng) for p, n in ((px, w), (py, h)))
        else:
            dx = int(rng.integers(0, w - win + 1))
            dy = int(rng.integers(0, h - win + 1))
        img_w = img[dy:dy + win, dx:dx + win]
        dens_w = dens[dy:dy + win, dx:dx + win]
        if win != c:
            interp = cv2.INTER_AREA if win > c else _UPSCALE[self.policy.upscale]
            img_w = cv2.resize(img_w, (c, c), interpolation=interp)
        t = math.ceil(c / self.stride)
        tgt = resize_density(dens_w, (t, t))
        return img_w, tgt


class EvalImages(Dataset):
    """Whole images resized by streamcount's input policy; GT count = annotated points.

    The target map is the official cubic ceil/8 x 64 map of the resized image's density; the
    reported count is the number of annotated points (inside the image), not the map's sum.
    """

    def __init__(self, items: Sequence[AnnotatedImage], rule: DensityRule, cache: DensityCache,
                 max_side: int | None, multiple: int = 8, stride: int = 8,
                 preload: bool = False) -> None:
        self.store = _Store(items, rule, cache, preload)
        self.max_side = max_side
        self.multiple = multiple
        self.stride = stride

    def __len__(self) -> int:
        return len(self.store.items)

    def __getitem__(self, index: int):
        img, dens = self.store.get(index)
        h, w = img.shape[:2]
        th, tw = plan_input_size(h, w, self.max_side, self.multiple)
        if (th, tw) != (h, w):
            img = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
            sh, sw = h / th, w / tw
            dens = cv2.resize(dens, (tw, th), interpolation=cv2.INTER_AREA) * (sh * sw)
        tgt = stride_target(dens.astype(np.float32), self.stride)
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        return x, torch.from_numpy(tgt)[None], float(self.store.items[index].count)
