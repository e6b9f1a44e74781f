"""A CSRNet teacher initialised by widening a trained 1/n student (function-preserving).

The paper's teacher starts from ImageNet VGG-16 weights, which cannot be downloaded here, and a
CSRNet trained from random weights on a 2-core CPU gets nowhere in hours. This module gives the
teacher a useful start instead: every student layer is widened to the teacher's width by
replicating channels (Net2WiderNet, Chen et al., ICLR 2016). The teacher computes exactly the
student's density map before training.

How it works: teacher channel ``j`` of a layer copies student channel ``j % c``. The next layer
sums the copies, each scaled by a split factor ``p`` (the copies' factors sum to 1). Unequal random
factors (``spread``) break the copies' symmetry without changing the function, so the copies
receive different gradients and can diverge during fine-tuning.

CLI::

    python -m training.widen STUDENT --out TEACHER.safetensors [--seed 0]

STUDENT is a streamcount ``.safetensors`` or a training checkpoint ``.pt``; the teacher file
holds true densities, like every streamcount model file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from streamcount.errors import UserError
from streamcount.models.card import ModelCard
from streamcount.models.csrnet import CSRNet, CSRNetStudent
from streamcount.models.weights import save_model
from training.tasks import load_weights_into


def _convs(net: nn.Module) -> list[nn.Conv2d]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


def _split_factors(channels: int, copies: int, spread: float,
                   gen: torch.Generator) -> torch.Tensor:
    """Per-copy factors, ``copies`` blocks of ``channels``; the copies of a channel sum to 1."""
    p = 1.0 + spread * (2 * torch.rand(copies, channels, generator=gen, dtype=torch.float64) - 1)
    return (p / p.sum(dim=0, keepdim=True)).reshape(-1)


@torch.no_grad()
def widen_student(student: CSRNetStudent, *, spread: float = 0.2, seed: int = 0) -> CSRNet:
    """A :class:`CSRNet` that computes ``student``'s density map.

    ``student`` must have the teacher's layout at a smaller width (any of the 1/n students whose
    widths divide the teacher's: 1/2 and 1/4). ``spread`` sets how unequal the copies' split
    factors are (0: equal, Net2Net's plain form; must be below 1).
    """
    if not 0.0 <= spread < 1.0:
        raise ValueError(f"spread must be in [0, 1), got {spread}")
    teacher = CSRNet()
    s_convs, t_convs = _convs(student), _convs(teacher)
    if len(s_convs) != len(t_convs):
        raise ValueError(f"student has {len(s_convs)} convs, the teacher {len(t_convs)}")
    gen = torch.Generator().manual_seed(seed)
    p_in = torch.ones(3, dtype=torch.float64)  # RGB input: no copies
    for i, (s, t) in enumerate(zip(s_convs, t_convs, strict=True)):
        so, si = s.weight.shape[:2]
        to, ti = t.weight.shape[:2]
        if to % so or ti % si or s.weight.shape[2:] != t.weight.shape[2:] \
                or s.dilation != t.dilation:
            raise ValueError(f"conv {i}: student {tuple(s.weight.shape)} does not widen to "
                             f"teacher {tuple(t.weight.shape)}")
        w = s.weight.double()[torch.arange(to) % so][:, torch.arange(ti) % si]
        w = w * p_in.view(1, -1, 1, 1)
        b = s.bias.double()[torch.arange(to) % so]
        t.weight.copy_(w.to(t.weight.dtype))
        t.bias.copy_(b.to(t.bias.dtype))
        p_in = _split_factors(so, to // so, spread, gen)
    return teacher.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.widen",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("student", help="student weights (.safetensors, or a checkpoint)")
    ap.add_argument("--out", required=True, help="teacher .safetensors to write")
    ap.add_argument("--ratio", type=int, default=4, help="the student's width ratio (default 4)")
    ap.add_argument("--spread", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    src = Path(args.student)
    try:
        student = CSRNetStudent(args.ratio)
        load_weights_into(student, src)  # its errors name the file
        teacher = widen_student(student, spread=args.spread, seed=args.seed)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, KeyError) as e:
        print(f"error: {src}: {e}", file=sys.stderr)
        return 2
    try:
        card = ModelCard.for_arch(
            "csrnet", Path(args.out).stem,
            source=f"training.widen {src.name} (ratio {args.ratio}, spread {args.spread}, "
                   f"seed {args.seed})",
            training_data="as the widened student", licence="Apache-2.0")
        save_model(args.out, teacher, card)
    except OSError as e:
        print(f"error: {args.out}: cannot write ({e.strerror or e})", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
