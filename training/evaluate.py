"""Evaluate a model once on a test split through streamcount's own inference path.

``python -m training.evaluate --model FILE_OR_NAME --data ROOT --split part_B/test_data
[--max-side N] [--out result.json]``

The model goes through :class:`streamcount.engine.torch_cpu.TorchBackend` (the fp32
``CountingNet`` graph users run: BGR uint8 in, colour conversion and normalisation inside) and
frames are sized with :func:`streamcount.engine.preprocess.plan_input_size` /
``prepare_frame`` (area resize so the longer side is at most ``--max-side``, multiples of the
card's ``input_multiple``). The predicted count is the density map's sum; the GT count is the
number of annotated points (not the sum of a rendered density map, which loses border mass).
``--model`` also accepts a training checkpoint (``.pt``); ``--val-of CHECKPOINT`` evaluates the
validation images recorded in that checkpoint instead of ``--split``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from streamcount.engine.preprocess import DEFAULT_MAX_SIDE, plan_input_size, prepare_frame
from streamcount.engine.torch_cpu import TorchBackend
from streamcount.errors import UserError
from streamcount.models.card import ModelCard
from streamcount.models.weights import load_model, resolve_model
from training.datasets import load_items
from training.datasets.common import AnnotatedImage

log = logging.getLogger(__name__)


def load_any(ref: str) -> tuple[torch.nn.Module, ModelCard, str]:
    """(net, card, description) from a streamcount model reference or a training checkpoint."""
    if ref.endswith(".pt"):
        from training.checkpointing import deploy_network, load_checkpoint

        ck = load_checkpoint(ref)
        net = deploy_network(ck)
        card = ModelCard.for_arch(ck["arch"], name=Path(ref).stem)
        return net.eval(), card, ref
    path = resolve_model(ref)
    net, card = load_model(path)
    return net, card, str(path)


def evaluate_items(net: torch.nn.Module, card: ModelCard, items: list[AnnotatedImage],
                   max_side: int | None, threads: int | None = None,
                   progress: bool = False) -> dict[str, Any]:
    """MAE / RMSE over ``items`` with the torch backend; per-image results included."""
    backend = TorchBackend(net, card, threads=threads)
    rows = []
    it = items
    if progress:
        from tqdm import tqdm
        it = tqdm(items, mininterval=10, file=sys.stderr)
    for item in it:
        img = cv2.imread(str(item.image_path), cv2.IMREAD_COLOR)  # BGR; grayscale -> 3 channels
        if img is None:
            raise UserError(f"{item.image_path}: unreadable image")
        h, w = plan_input_size(img.shape[0], img.shape[1], max_side, card.input_multiple)
        frame = prepare_frame(img, (h, w))
        pred = float(backend.infer(frame[None])[0].sum())
        rows.append({"image": item.image_id, "dataset": item.dataset, "gt": item.count,
                     "pred": pred, "input": [w, h]})
    res = {**_errors(rows), "max_side": max_side, "gt_count": "annotated points",
           "per_image": rows}
    datasets = sorted({r["dataset"] for r in rows})
    if len(datasets) > 1:  # e.g. the hold-out of an SHA + SHB run: each part's own figures
        res["by_dataset"] = {d: _errors([r for r in rows if r["dataset"] == d])
                             for d in datasets}
    return res


def _errors(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """MAE, RMSE and image count of per-image rows."""
    err = np.array([r["pred"] - r["gt"] for r in rows], dtype=np.float64)
    return {"mae": float(np.abs(err).mean()) if len(err) else float("nan"),
            "rmse": float(np.sqrt((err ** 2).mean())) if len(err) else float("nan"),
            "images": len(rows)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.evaluate",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="weight file, model name or training .pt")
    ap.add_argument("--data", required=True, help="dataset root (e.g. ../shared/data/shanghaitech)")
    ap.add_argument("--dataset", default="shanghaitech",
                    choices=["shanghaitech", "ucf_qnrf", "ucf_cc_50", "jhu", "nwpu", "points"])
    ap.add_argument("--split", default="part_B/test_data")
    ap.add_argument("--val-of", help="evaluate the validation images recorded in this checkpoint")
    ap.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                    help=f"largest input side (default {DEFAULT_MAX_SIDE}; 0 = native size)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", help="write the JSON result here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        net, card, desc = load_any(args.model)
        split = args.split
        if args.val_of:
            from training.checkpointing import load_checkpoint

            from training.train import held_out_items

            ck = load_checkpoint(args.val_of)
            split = ck["config"]["data"]["train_split"]
            items = held_out_items(ck, args.dataset, args.data)
            split = f"{split} (validation hold-out of {args.val_of})"
        else:
            items = load_items(args.dataset, args.data, split)
        t0 = time.monotonic()
        res = evaluate_items(net, card, items, args.max_side or None, args.threads, progress=True)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res.update(model=desc, dataset=args.dataset, data=str(args.data), split=split,
               seconds=round(time.monotonic() - t0, 1))
    print(json.dumps({k: v for k, v in res.items() if k != "per_image"}, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
