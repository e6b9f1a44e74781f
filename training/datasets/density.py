"""Ground-truth density maps (skt.md section 3.1) and stride-8 targets (section 3.2).

Rules (the official ``preprocess/*_GT_generation.py``):

- ``adaptive`` (ShanghaiTech A): sigma = beta * mean distance to the k=3 nearest neighbours
  (beta = 0.3, i.e. 0.1 * (d1 + d2 + d3)), KDTree on the point set; one point alone gets
  sigma = mean(H, W) / 4. With 2 or 3 points (fewer than 3 neighbours; the official code
  yields sigma = inf there) we use beta * mean of the neighbours that exist.
- ``fixed`` (ShanghaiTech B): sigma = 15 for every point.
- ``qnrf`` (UCF-QNRF): sigma = min(distance to the nearest neighbour, 30) (one point alone:
  mean(H, W) / 4, as the adaptive rule).

Every point is placed at ``(int(y), int(x))``; points outside the image are dropped. Each point
is rendered as ``scipy.ndimage.gaussian_filter(delta, sigma, mode='constant')`` would render it
(truncate = 4, so mass falling outside the image is lost, exactly as in the official code), but
on a local window, which is identical and orders of magnitude faster. Two points on the same
pixel each get their own Gaussian (the official code writes ``k[y, x] = 1`` and collapses them;
we keep the annotated count).

``border="renormalize"`` (not official; used by the CPU recipe of the shipped model) rescales
each point's clipped Gaussian to sum 1, so maps sum to the annotated count instead of losing
about 10% of ShanghaiTech B's mass at the image border.

Maps are cached on disk as ``.npz`` keyed by dataset, image and rule (plus a digest of the
points, so edited annotations are never served stale).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import cKDTree

log = logging.getLogger(__name__)

TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default
RULES = ("adaptive", "fixed", "qnrf")


def default_cache_dir() -> Path:
    """``$STREAMCOUNT_DENSITY_CACHE`` or ``~/.cache/streamcount/density``."""
    env = os.environ.get("STREAMCOUNT_DENSITY_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "streamcount" / "density"


@dataclass(frozen=True)
class DensityRule:
    """How sigma is chosen for each point."""

    kind: str = "adaptive"  # one of RULES
    beta: float = 0.3
    k: int = 3
    sigma: float = 15.0  # fixed rule
    max_sigma: float = 30.0  # qnrf rule
    #: "drop": mass falling outside the image is lost (official); "renormalize": each point's
    #: clipped Gaussian is rescaled to sum 1, so the map sums to the annotated count
    border: str = "drop"

    def __post_init__(self) -> None:
        if self.kind not in RULES:
            raise ValueError(f"unknown density rule {self.kind!r} (choose from {RULES})")
        if self.border not in ("drop", "renormalize"):
            raise ValueError(f"unknown border policy {self.border!r} (drop or renormalize)")

    @property
    def key(self) -> str:
        """A short, filesystem-safe identifier of the rule and its parameters."""
        suffix = "_renorm" if self.border == "renormalize" else ""
        if self.kind == "adaptive":
            return f"adaptive_b{self.beta:g}_k{self.k}{suffix}"
        if self.kind == "fixed":
            return f"fixed_s{self.sigma:g}{suffix}"
        return f"qnrf_max{self.max_sigma:g}{suffix}"


SHA_RULE = DensityRule("adaptive")
SHB_RULE = DensityRule("fixed", sigma=15.0)
QNRF_RULE = DensityRule("qnrf")


def gaussian_kernel1d(sigma: float, truncate: float = TRUNCATE) -> np.ndarray:
    """scipy's normalised 1-D Gaussian weights, radius ``int(truncate * sigma + 0.5)``."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 / (sigma * sigma) * x * x)
    return w / w.sum()


def place_points(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Integer (row, col) pixel positions ``(int(y), int(x))`` of the points inside the image."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    cols = np.trunc(pts[:, 0])
    rows = np.trunc(pts[:, 1])
    ok = (cols >= 0) & (rows >= 0) & (cols < width) & (rows < height)
    return np.stack([rows[ok], cols[ok]], axis=1).astype(np.int64)


def point_sigmas(pix: np.ndarray, height: int, width: int, rule: DensityRule) -> np.ndarray:
    """Sigma of each placed point (``pix`` = N x (row, col)) under ``rule``."""
    n = len(pix)
    if n == 0:
        return np.zeros(0)
    if rule.kind == "fixed":
        return np.full(n, float(rule.sigma))
    lonely = (height + width) / 2.0 / 2.0 / 2.0  # np.average(shape)/2/2 in the official code
    if n == 1:
        return np.array([lonely])
    xy = pix[:, ::-1].astype(np.float64)  # KDTree on (x, y) as the official code
    kq = rule.k + 1 if rule.kind == "adaptive" else 2
    kq = min(kq, n)
    dist, _ = cKDTree(xy, leafsize=2048).query(xy, k=kq)
    neigh = dist[:, 1:]
    if rule.kind == "adaptive":
        return rule.beta * neigh.mean(axis=1)
    return np.minimum(neigh[:, 0], rule.max_sigma)


def render_density(points: np.ndarray, height: int, width: int, rule: DensityRule,
                   truncate: float = TRUNCATE) -> np.ndarray:
    """Full-resolution float32 density map of ``points`` (N x 2, x then y) under ``rule``."""
    renorm = rule.border == "renormalize"
    dens = np.zeros((height, width), dtype=np.float64)
    pix = place_points(points, height, width)
    sigmas = point_sigmas(pix, height, width, rule)
    cache: dict[float, np.ndarray] = {}
    for (r, c), s in zip(pix, sigmas, strict=True):
        s = float(s)
        if s <= 0:  # two points on one pixel (distance 0): a delta, as gaussian_filter(sigma=0)
            dens[r, c] += 1.0
            continue
        k = cache.get(s)
        if k is None:
            k = gaussian_kernel1d(s, truncate)
            cache[s] = k
        rad = (len(k) - 1) // 2
        r0, r1 = max(0, r - rad), min(height, r + rad + 1)
        c0, c1 = max(0, c - rad), min(width, c + rad + 1)
        ky = k[r0 - (r - rad): r1 - (r - rad)]
        kx = k[c0 - (c - rad): c1 - (c - rad)]
        if renorm:  # separable kernel: the clipped mass is the product of the 1-D sums
            ky = ky / ky.sum()
            kx = kx / kx.sum()
        dens[r0:r1, c0:c1] += np.outer(ky, kx)
    return dens.astype(np.float32)


def target_size(height: int, width: int, stride: int = 8) -> tuple[int, int]:
    """Output size of a ceil-mode pooled network: ceil applied once per 2x pooling."""
    h, w = height, width
    s = stride
    while s > 1:
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        s //= 2
    return h, w


def resize_density(dens: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Cubic resize scaled by the area ratio (x64 for stride 8), so the sum is ~preserved.

    This is the official target: ``cv2.resize(d, (w8, h8), INTER_CUBIC) * 64`` at the ceil/8
    size; for other sizes the factor is ``(H * W) / (h * w)``. Cubic resizing can produce small
    negative values (kept, as in the official code).
    """
    h, w = out_hw
    factor = dens.shape[0] * dens.shape[1] / float(h * w)
    out = cv2.resize(dens.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return (out * factor).astype(np.float32)


def stride_target(dens: np.ndarray, stride: int = 8) -> np.ndarray:
    """The stride-``stride`` training/eval target of a full-resolution density map (section 3.2).

    For stride 8 at full size the factor is exactly the official x64 only when H, W are
    multiples of 8; we use the official factor ``stride**2`` always, as ``image.py`` does.
    """
    h, w = target_size(dens.shape[0], dens.shape[1], stride)
    out = cv2.resize(dens.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return (out * float(stride * stride)).astype(np.float32)


class DensityCache:
    """On-disk cache of full-resolution density maps: ``<dir>/<dataset>/<rule>/<image>.npz``."""

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _digest(points: np.ndarray, height: int, width: int) -> str:
        h = hashlib.sha1(np.ascontiguousarray(points, dtype=np.float64).tobytes())
        h.update(f"{height}x{width}".encode())
        return h.hexdigest()[:16]

    def path(self, dataset: str, image_id: str, rule: DensityRule) -> Path:
        safe = image_id.replace("\\", "/").strip("/")
        return self.dir / dataset / rule.key / f"{safe}.npz"

    def get(self, dataset: str, image_id: str, points: np.ndarray, height: int, width: int,
            rule: DensityRule) -> np.ndarray:
        """The density map, from the cache if present and current, else rendered and stored."""
        p = self.path(dataset, image_id, rule)
        digest = self._digest(points, height, width)
        if p.is_file():
            try:
                with np.load(p) as z:
                    if str(z["digest"]) == digest:
                        self.hits += 1
                        return z["density"]
            except (OSError, ValueError, KeyError) as e:
                log.warning("density cache entry %s unreadable (%s); re-rendering", p, e)
        self.misses += 1
        dens = render_density(points, height, width, rule)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + f".{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, density=dens, digest=np.array(digest))
        os.replace(tmp, p)
        return dens
