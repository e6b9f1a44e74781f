"""Scale robustness of a density model (accuracy issue, item 4): ShanghaiTech B test images
resized to 0.5x, 0.75x, 1.5x and 2x of native, counted through streamcount's inference path
(fp32 torch backend, no downscaling: max side 4096); the mean absolute relative change of each
count against the native one, per scale. A model that counts a person as one whatever their
size in pixels scores near 0.

CLI::

    python -m training.scale_test --model default --data ../shared/data/shanghaitech [--out F.json]
    python -m training.scale_test --model CKPT.pt --data DATA_ROOT --val-of CKPT.pt

``--val-of`` measures on the SHB images of a checkpoint's validation hold-out (train_data)
instead, so that checkpoints can be compared for scale robustness without touching the test set.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from streamcount.engine.preprocess import plan_input_size, prepare_frame
from streamcount.engine.torch_cpu import TorchBackend
from streamcount.errors import UserError

SCALES = (0.5, 0.75, 1.5, 2.0)
#: every 13th SHB test image: 25 of the 316, spread over the split
IMAGES = tuple(range(1, 317, 13))
MAX_SIDE = 4096


def scale_test_images(data: str | Path,
                      images: tuple[int, ...] = IMAGES) -> list[Path]:
    """The scale test's SHB ``test_data`` images (``IMG_<i>.jpg`` for ``i`` in ``images``)."""
    return [Path(data) / f"part_B/test_data/images/IMG_{i}.jpg" for i in images]


def holdout_images(checkpoint: str | Path, data: str | Path) -> list[Path]:
    """The ShanghaiTech B images of ``checkpoint``'s validation hold-out (train_data)."""
    from training.checkpointing import load_checkpoint
    from training.train import held_out_items

    items = held_out_items(load_checkpoint(checkpoint), "shanghaitech", str(data))
    paths = [it.image_path for it in items if it.dataset.endswith("part_B")]
    if not paths:
        raise UserError(f"{checkpoint}: its validation hold-out holds no ShanghaiTech B image")
    return paths


def relative_changes(model: str, data: str | Path, scales: tuple[float, ...] = SCALES,
                     images: tuple[int, ...] = IMAGES,
                     paths: list[Path] | None = None) -> dict[float, list[float]]:
    """``{scale: [(count(scaled) - count(native)) / max(count(native), 1) per image]}``:
    signed, so that a model counting more when people are small shows at 0.5x as positive.
    ``paths`` (any images) replaces the SHB test images named by ``images``."""
    from training.evaluate import load_any

    net, card, _ = load_any(model)
    backend = TorchBackend(net, card)

    def count(img: np.ndarray) -> float:
        size = plan_input_size(img.shape[0], img.shape[1], MAX_SIDE, card.input_multiple)
        return float(backend.infer(prepare_frame(img, size)[None])[0].sum())

    change: dict[float, list[float]] = {s: [] for s in scales}
    for path in paths if paths is not None else scale_test_images(data, images):
        img = cv2.imread(str(path)) if path.is_file() else None
        if img is None:
            raise UserError(f"{path}: unreadable or missing image")
        native = count(img)
        for s in scales:
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
            c = count(cv2.resize(img, None, fx=s, fy=s, interpolation=interp))
            change[s].append((c - native) / max(native, 1.0))
    return change


def scale_changes(model: str, data: str | Path, scales: tuple[float, ...] = SCALES,
                  images: tuple[int, ...] = IMAGES) -> dict[float, float]:
    """``{scale: mean |count(scaled) - count(native)| / max(count(native), 1)}``."""
    return {s: float(np.mean(np.abs(v)))
            for s, v in relative_changes(model, data, scales, images).items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.scale_test",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default", help="model name, weight file or training .pt")
    ap.add_argument("--data", required=True, help="ShanghaiTech root")
    ap.add_argument("--val-of", metavar="CKPT",
                    help="measure on the SHB images of this checkpoint's validation hold-out")
    ap.add_argument("--out", help="write the JSON result here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        paths = holdout_images(args.val_of, args.data) if args.val_of else None
        change = relative_changes(args.model, args.data, paths=paths)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mean = {s: float(np.mean(np.abs(v))) for s, v in change.items()}
    signed = {s: float(np.mean(v)) for s, v in change.items()}
    print(f"{args.model}: mean |relative change| vs native: "
          + ", ".join(f"{s}x {mean[s]:.1%} (mean {signed[s]:+.1%})" for s in change))
    if args.out:
        n_images = len(change[SCALES[0]])
        Path(args.out).write_text(json.dumps({"model": args.model, "images": n_images,
                                              "split": (f"part_B hold-out of {args.val_of}"
                                                        if args.val_of else "part_B/test_data"),
                                              "max_side": MAX_SIDE,
                                              "mean_abs_rel_change": {str(s): m for s, m
                                                                      in mean.items()},
                                              "mean_rel_change": {str(s): m for s, m
                                                                  in signed.items()}},
                                             indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
