"""Combine a sparse-scene and a dense-scene model into one dual model
(:mod:`streamcount.models.dual`: switched per frame by the dense model's mean density): two
1/4-CSRNet students make a ``csrnet_1_4_dual``, two CSRNet teachers a ``csrnet_dual``.

``python -m training.combine --sparse REF --dense REF --data ROOT --out FILE
[--holdout CKPT ...] [--name default] [--metrics RESULT.json ...] [--card CARD.json]``

``--card`` also writes the stored card (thresholds, figures, sha256) as JSON: for a model that
is rebuilt elsewhere from its members (``python -m training.teacher accurate``).

``REF`` is a model name, a weight file or a training checkpoint (``.pt``). The blend thresholds
``lo``/``hi`` of :class:`streamcount.models.dual.DualDensity` are fitted on the validation
hold-outs recorded in training checkpoints (``--holdout``; by default the ``.pt`` files among
the two students): images of the *train* splits held out of training; test splits are never
used. The hold-out images of all checkpoints are pooled (each image once) and grouped by
dataset; every pair on a log grid is scored by the sum over datasets of the relative MAE (MAE /
mean count), so sparse and dense scenes weigh alike whatever their crowd sizes. Frames are sized
by streamcount's default input policy (``--max-side``), as users run the model.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from streamcount.engine.preprocess import DEFAULT_MAX_SIDE, plan_input_size, prepare_frame
from streamcount.engine.torch_cpu import TorchBackend
from streamcount.errors import UserError
from streamcount.models.card import ModelCard
from streamcount.models.dual import DualDensity, blend_weight
from streamcount.models.weights import save_model
from training.checkpointing import load_checkpoint
from training.evaluate import load_any
from training.export import DEFAULT_LICENCE, metric_from_result

log = logging.getLogger(__name__)

#: candidate ``lo`` values (people per output cell, frame mean) and ``hi / lo`` ratios
LO_GRID = tuple(float(v) for v in np.geomspace(0.003, 0.5, 30))
RATIOS = (1.25, 1.5, 2.0, 3.0, 5.0)


#: the dual architecture for a pair of member architectures, and its DualDensity ratio
DUAL_ARCHS = {"csrnet_1_4": ("csrnet_1_4_dual", 4), "csrnet": ("csrnet_dual", 1)}


def dual_arch(sparse_arch: str, dense_arch: str) -> tuple[str, int]:
    """(dual architecture, channel divisor) for two member architectures, which must match."""
    if sparse_arch != dense_arch or sparse_arch not in DUAL_ARCHS:
        raise UserError(
            f"--sparse is {sparse_arch}, --dense is {dense_arch}: a dual model pairs two of one "
            f"architecture ({' or '.join(DUAL_ARCHS)})")
    return DUAL_ARCHS[sparse_arch]


def dual_licence(sparse: str, dense: str) -> str:
    """The licence line of a dual model: its members' (each named when they differ)."""
    known = [x for x in (sparse, dense) if x and x != "unknown"]
    if not known:
        return DEFAULT_LICENCE
    if sparse == dense:
        return sparse
    return f"sparse model: {sparse}; dense model: {dense}"


def holdout_items(checkpoint: str, data: str, dataset: str = "shanghaitech") -> list:
    """The validation images recorded in a training checkpoint."""
    from training.train import held_out_items

    items = held_out_items(load_checkpoint(checkpoint), dataset, data)
    if not items:
        raise UserError(f"{checkpoint}: no validation images recorded")
    return items


def group_by_dataset(items: list) -> dict[str, list]:
    """Hold-out images pooled from several checkpoints: each image once, grouped by dataset
    (e.g. ``shanghaitech/part_A`` and ``shanghaitech/part_B``), in sorted order."""
    groups: dict[str, dict[str, Any]] = {}
    for it in items:
        groups.setdefault(it.dataset, {}).setdefault(it.image_id, it)
    return {d: [g[k] for k in sorted(g)] for d, g in sorted(groups.items())}


def density_maps(model: str | tuple[torch.nn.Module, ModelCard], items: list,
                 max_side: int | None) -> list[np.ndarray]:
    """fp32 density maps of a model (a reference, or a loaded (net, card)) on images, through
    streamcount's inference path."""
    net, card = model if isinstance(model, tuple) else load_any(model)[:2]
    backend = TorchBackend(net, card)
    out = []
    for it in items:
        img = cv2.imread(str(it.image_path), cv2.IMREAD_COLOR)
        if img is None:
            raise UserError(f"{it.image_path}: unreadable image")
        h, w = plan_input_size(img.shape[0], img.shape[1], max_side, card.input_multiple)
        out.append(backend.infer(prepare_frame(img, (h, w))[None])[0])
    return out


def blended_counts(sparse: list[np.ndarray], dense: list[np.ndarray], lo: float,
                   hi: float) -> np.ndarray:
    """Counts of the blended maps (the same rule as the model's graph)."""
    counts = []
    for s, d in zip(sparse, dense, strict=True):
        ts, td = torch.from_numpy(s)[None, None], torch.from_numpy(d)[None, None]
        m = blend_weight(td, lo, hi)
        counts.append(float((ts + m * (td - ts)).sum()))
    return np.asarray(counts)


def fit_thresholds(sets: list[tuple[list[np.ndarray], list[np.ndarray], np.ndarray]]
                   ) -> tuple[float, float, list[dict[str, Any]]]:
    """(lo, hi, table) minimising the sum over ``sets`` of MAE / mean true count."""
    table = []
    for lo in LO_GRID:
        for r in RATIOS:
            score, parts = 0.0, []
            for sparse, dense, truth in sets:
                mae = float(np.abs(blended_counts(sparse, dense, lo, lo * r) - truth).mean())
                parts.append(mae)
                score += mae / max(float(truth.mean()), 1.0)
            table.append({"lo": lo, "hi": lo * r, "score": score, "mae": parts})
    best = min(table, key=lambda row: row["score"])
    return best["lo"], best["hi"], table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.combine",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--sparse", required=True,
                    help="sparse-scene model: model name, weight file or checkpoint (.pt)")
    ap.add_argument("--dense", required=True,
                    help="dense-scene model: model name, weight file or checkpoint (.pt)")
    ap.add_argument("--holdout", nargs="*", default=None,
                    help="training checkpoints whose validation hold-outs fit the blend "
                         "(default: the .pt files among --sparse and --dense)")
    ap.add_argument("--data", required=True, help="dataset root (ShanghaiTech)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default="default")
    ap.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE)
    ap.add_argument("--metrics", nargs="*", default=[], help="training.evaluate JSON results")
    ap.add_argument("--card", help="also write the stored card here as JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        s_net, s_card, _ = load_any(args.sparse)
        d_net, d_card, _ = load_any(args.dense)
        arch, _ = dual_arch(s_card.arch, d_card.arch)
        ckpts = args.holdout if args.holdout is not None else [
            r for r in (args.sparse, args.dense) if r.endswith(".pt")]
        if not ckpts:
            raise UserError("--holdout: name the training checkpoints whose validation "
                            "images fit the blend (no .pt among --sparse/--dense)")
        pooled = [it for c in ckpts for it in holdout_items(c, args.data)]
        groups = group_by_dataset(pooled)
        sets = []
        for items in groups.values():
            truth = np.asarray([it.count for it in items], dtype=np.float64)
            sets.append((density_maps((s_net, s_card), items, args.max_side),
                         density_maps((d_net, d_card), items, args.max_side), truth))
        names = [f"{len(v)} held-out {k} train images" for k, v in groups.items()]
        lo, hi, table = fit_thresholds(sets)
        best = min(table, key=lambda row: row["score"])
        log.info("fitted lo %.4f hi %.4f: hold-out MAE %s", lo, hi,
                 ", ".join(f"{m:.2f}" for m in best["mae"]))
        model = DualDensity.of(s_net, d_net, lo, hi)
        metrics = [metric_from_result(json.loads(Path(m).read_text())) for m in args.metrics]
        card = ModelCard.for_arch(
            arch, args.name,
            training_data=f"sparse model: {s_card.training_data or s_card.name}; dense "
                          f"model: {d_card.training_data or d_card.name}",
            recipe=f"two {s_card.arch} models, sparse {Path(args.sparse).name} and dense "
                   f"{Path(args.dense).name}, switched per frame by the dense model's mean "
                   f"density; lo/hi fitted by training.combine on {' and '.join(names)}",
            licence=dual_licence(s_card.licence, d_card.licence), source="training.combine",
            metrics=tuple(metrics),
            extra={"sparse": Path(args.sparse).name, "dense": Path(args.dense).name,
                   "lo": lo, "hi": hi, "gate": "frame mean of the dense model's map",
                   "holdout_mae": dict(zip(groups, best["mae"], strict=True)),
                   "holdout_score": best["score"]})
        stored = save_model(args.out, model.eval(), card)
        if args.card:
            Path(args.card).parent.mkdir(parents=True, exist_ok=True)
            Path(args.card).write_text(
                json.dumps(json.loads(stored.to_json()), indent=1, sort_keys=True) + "\n")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: lo {lo:.4f} hi {hi:.4f}; hold-out MAE "
          + ", ".join(f"{k} {m:.2f}" for k, m in zip(groups, best["mae"], strict=True))
          + f"; score (sum of MAE / mean count) {best['score']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
