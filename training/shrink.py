"""A 1/n-CSRNet student initialised from a trained CSRNet teacher (filter selection).

The paper's students start from random weights; on a 2-core CPU a student from random weights
spends most of its budget learning edge and texture filters that the teacher already has. This
module hands the student the teacher's own filters instead:

1. every conv keeps the ``1/n`` of the teacher's output filters with the largest L2 norm,
   measured over the input channels the previous layer kept (the output conv keeps its one
   filter);
2. the kept weights are ``W_t[out_idx][:, in_idx]``, the teacher's biases ``b_t[out_idx]``;
3. dropping three quarters of a layer's inputs shrinks its pre-activations, so each kept filter
   gets a gain fitted by least squares, layer by layer on real images, so that the student's
   pre-activation (on the student's own inputs) matches the teacher's for that filter.

The student then computes roughly the teacher's features at those channels and a density map of
roughly the right scale before any training: a starting point for SKT or GT training.

CLI::

    python -m training.shrink TEACHER --images DIR --out STUDENT.safetensors [--ratio 4]

TEACHER is a model name (e.g. ``csrnet_sha``), a ``.safetensors`` or a training checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from streamcount.errors import UserError
from streamcount.models.card import ModelCard
from streamcount.models.csrnet import CSRNet, CSRNetStudent
from streamcount.models.registry import arch_spec
from streamcount.models.weights import save_model
from training.tasks import load_weights_into

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def _ops_teacher(t: CSRNet) -> list[nn.Module]:
    return [*t.frontend, *t.backend, t.output_layer]


def _ops_student(s: CSRNetStudent) -> list[nn.Module]:
    ops: list[nn.Module] = []
    for name in s._ORDER:
        m = getattr(s, name)
        ops.extend(m if isinstance(m, nn.Sequential) else [m])
    return [*ops, s.conv5_0]


def _normalise(images: Sequence[np.ndarray]) -> list[torch.Tensor]:
    """BGR uint8 images -> CSRNet's normalised RGB float input, one tensor each."""
    spec = arch_spec("csrnet")
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    out = []
    for img in images:
        x = torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1])).permute(2, 0, 1)[None]
        out.append((x.float() * spec.input_scale - mean) / std)
    return out


@torch.no_grad()
def shrink_teacher(teacher: CSRNet, images: Sequence[np.ndarray], ratio: int = 4
                   ) -> CSRNetStudent:
    """A :class:`CSRNetStudent` of width ``1/ratio`` made of ``teacher``'s largest filters.

    ``images`` (BGR uint8, any sizes divisible by 8) fit the per-filter gains; a few
    hundred-pixel images are enough.
    """
    student = CSRNetStudent(ratio).eval()
    teacher = teacher.eval()
    t_ops, s_ops = _ops_teacher(teacher), _ops_student(student)
    if [type(m) for m in t_ops] != [type(m) for m in s_ops]:
        raise ValueError("teacher and student layouts differ")
    xs_t = _normalise(images)
    xs_s = [x.clone() for x in xs_t]
    in_idx = torch.arange(3)
    for t_op, s_op in zip(t_ops, s_ops, strict=True):
        if isinstance(t_op, nn.Conv2d):
            so = s_op.weight.shape[0]
            w_in = t_op.weight[:, in_idx]
            if so == t_op.weight.shape[0]:
                out_idx = torch.arange(so)
            else:
                norms = w_in.flatten(1).norm(dim=1)
                out_idx = torch.sort(torch.topk(norms, so).indices).values
            w = w_in[out_idx].clone()
            # per-filter gain: student pre-activation (its own inputs) vs the teacher's
            num = torch.zeros(so, dtype=torch.float64)
            den = torch.zeros(so, dtype=torch.float64)
            for xt, xs in zip(xs_t, xs_s, strict=True):
                zt = nn.functional.conv2d(xt, t_op.weight[out_idx], None, t_op.stride,
                                          t_op.padding, t_op.dilation)
                zs = nn.functional.conv2d(xs, w, None, s_op.stride, s_op.padding, s_op.dilation)
                num += (zs * zt).sum(dim=(0, 2, 3)).double()
                den += (zs * zs).sum(dim=(0, 2, 3)).double()
            gain = torch.where(den > 0, num / den.clamp_min(1e-12), torch.ones_like(den))
            s_op.weight.copy_(w * gain.float().view(-1, 1, 1, 1))
            s_op.bias.copy_(t_op.bias[out_idx])
            in_idx = out_idx
        xs_t = [t_op(x) for x in xs_t]
        xs_s = [s_op(x) for x in xs_s]
    return student


def load_images(folder: str | Path, count: int = 8, max_side: int = 512) -> list[np.ndarray]:
    """The first ``count`` images of ``folder`` (sorted), resized to at most ``max_side`` px and
    cropped to multiples of 8."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)[:count]
    if not files:
        raise UserError(f"{folder}: no images ({', '.join(IMAGE_EXTS)})")
    out = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise UserError(f"{f}: unreadable image")
        s = min(1.0, max_side / max(img.shape[:2]))
        if s < 1.0:
            img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        h, w = (img.shape[0] // 8) * 8, (img.shape[1] // 8) * 8
        out.append(img[:h, :w])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.shrink",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("teacher", help="CSRNet teacher: model name, .safetensors or checkpoint")
    ap.add_argument("--images", required=True, help="folder of training images for the gains")
    ap.add_argument("--out", required=True, help="student .safetensors to write")
    ap.add_argument("--ratio", type=int, default=4, help="width ratio (default 4: 1/4-CSRNet)")
    ap.add_argument("--count", type=int, default=8, help="images used for the gains")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        teacher = CSRNet()
        load_weights_into(teacher, args.teacher)
        images = load_images(args.images, args.count)
        student = shrink_teacher(teacher, images, args.ratio)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {args.teacher}: {e}", file=sys.stderr)
        return 2
    arch = "csrnet_1_4" if args.ratio == 4 else f"csrnet_1_{args.ratio}"
    try:
        card = ModelCard.for_arch(
            arch, Path(args.out).stem,
            source=f"training.shrink {args.teacher} (ratio {args.ratio}, largest-norm filters, "
                   f"gains fitted on {len(images)} images of {args.images})",
            training_data="as the teacher", licence="as the teacher")
        save_model(args.out, student, card)
    except OSError as e:
        print(f"error: {args.out}: cannot write ({e.strerror or e})", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
