"""CUDA backend: the deploy graph in eager PyTorch on an NVIDIA GPU, fp16 or fp32.

Per call: the ``uint8`` frames are copied into a pinned host buffer, uploaded with a
``non_blocking`` copy on the backend's own CUDA stream, resized on the GPU
(:mod:`streamcount.engine.gpu_preprocess`), run through :class:`CountingNet` (colour and
mean/std folded in) in channels_last memory, and the densities come back through a pinned
buffer. With ``cuda_graphs`` the resize + network is captured once per (batch, frame size,
input size) and replayed, which removes the per-kernel launch cost that dominates small
models at small batches.

``device="cpu"`` runs the same batching and preprocessing code without CUDA (fp32, no graphs,
no pinned memory, no stream): it exists so the code paths are tested on machines without a
GPU. The CUDA-only parts (streams, pinned buffers, graph capture, fp16) are exercised only where
a GPU is present (tests marked ``gpu``).
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from streamcount.errors import BackendError
from streamcount.engine.gpu_preprocess import check_resize_mode, resize_frames
from streamcount.models.card import ModelCard
from streamcount.models.deploy import CountingNet

log = logging.getLogger(__name__)

#: precisions the CUDA backend runs in
PRECISIONS: tuple[str, ...] = ("fp32", "fp16")


@dataclass(frozen=True)
class CudaProbe:
    """Whether PyTorch can use an NVIDIA GPU here, and which one."""

    available: bool
    reason: str = ""  # why not, when not available
    index: int = 0
    name: str = ""
    capability: str = ""  # compute capability, e.g. "9.0"
    memory_gib: float = 0.0
    torch_cuda: str = ""  # CUDA version PyTorch was built with


def _device_index(device: str | torch.device) -> int:
    d = torch.device(device)
    return d.index if d.index is not None else 0


def probe_cuda(device: str | torch.device = "cuda") -> CudaProbe:
    """Check for a usable CUDA device without raising (the reason says what is missing)."""
    index = _device_index(device)
    built = torch.version.cuda
    if not built:
        return CudaProbe(False, f"this PyTorch build ({torch.__version__}) has no CUDA support",
                         index=index)
    try:
        count = torch.cuda.device_count()
        usable = torch.cuda.is_available()
    except Exception as e:  # noqa: BLE001 - a broken driver raises all sorts of things
        return CudaProbe(False, f"CUDA initialisation failed ({e})", index=index,
                         torch_cuda=built)
    if not usable or count == 0:
        return CudaProbe(False, "no NVIDIA GPU visible to PyTorch (no driver, or "
                                "CUDA_VISIBLE_DEVICES hides it)", index=index, torch_cuda=built)
    if index >= count:
        return CudaProbe(False, f"GPU {index} requested but only {count} visible", index=index,
                         torch_cuda=built)
    props = torch.cuda.get_device_properties(index)
    return CudaProbe(True, "", index=index, name=props.name,
                     capability=f"{props.major}.{props.minor}",
                     memory_gib=round(props.total_memory / 2**30, 1), torch_cuda=built)


class HalfNet(nn.Module):
    """Runs a network in fp16: casts its (normalised, fp32) input to half first.

    Wrapped inside :class:`CountingNet`, the colour/mean/std map stays in fp32 (0-255 inputs)
    and only the convolutions run in half precision.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.half())


def build_device_model(net: nn.Module, card: ModelCard, precision: str,
                       channels_last: bool = True) -> CountingNet:
    """The deploy graph for a GPU backend: a *copy* of ``net`` (the caller's stays fp32) wrapped
    in :class:`CountingNet`, converted to ``precision``, in eval mode."""
    if precision not in PRECISIONS:
        raise BackendError(f"precision '{precision}' not supported here (choose from "
                           f"{', '.join(PRECISIONS)})")
    from streamcount.models.lazy import materialize

    net = copy.deepcopy(materialize(net)).eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if precision == "fp16":
        net = HalfNet(net)
    return CountingNet(net, card).eval()


@dataclass
class _Slot:
    """Buffers (and the captured graph) for one (frames shape, input size)."""

    host_in: torch.Tensor | None = None  # pinned uint8, the frames' shape
    dev_in: torch.Tensor | None = None  # device uint8, same shape
    dev_out: torch.Tensor | None = None  # device float32 N x h x w
    host_out: torch.Tensor | None = None  # pinned float32, dev_out's shape
    graph: torch.cuda.CUDAGraph | None = None


class CudaBackend:
    """Eager PyTorch on a CUDA device (see the module docstring for the data path).

    Raises :class:`BackendError` ("CUDA not available: ...") when ``device`` is a CUDA device
    and none is usable. ``infer`` takes frames already at the model input size (the
    :class:`~streamcount.engine.base.Backend` contract); :meth:`infer_resized` takes frames at
    any size and resizes them on the device.
    """

    name = "cuda"

    def __init__(self, net: nn.Module, card: ModelCard, *, precision: str = "fp16",
                 device: str = "cuda", channels_last: bool = True, cuda_graphs: bool = True,
                 resize_mode: str = "area", max_slots: int = 16,
                 max_batch: int | None = None) -> None:
        self.card = card
        self.precision = precision
        self.device = torch.device(device)
        self.resize_mode = check_resize_mode(resize_mode)
        self.channels_last = channels_last
        self.max_batch = max_batch
        self._max_slots = max(1, max_slots)
        self._slots: OrderedDict[tuple[tuple[int, ...], tuple[int, int]], _Slot] = OrderedDict()
        self.gpu: CudaProbe | None = None
        if self.device.type == "cuda":
            probe = probe_cuda(self.device)
            if not probe.available:
                raise BackendError(f"CUDA not available: {probe.reason}")
            self.gpu = probe
            self.device = torch.device("cuda", probe.index)
            self._stream: torch.cuda.Stream | None = torch.cuda.Stream(self.device)
        elif self.device.type == "cpu":
            if precision != "fp32":
                raise BackendError(f"precision '{precision}' needs a CUDA device "
                                   "(device='cpu' runs fp32 only)")
            cuda_graphs = False
            self._stream = None
        else:
            raise BackendError(f"unsupported device '{device}' for the {self.name} backend")
        self.cuda_graphs = cuda_graphs
        self._setup(net, card)

    # -- model -------------------------------------------------------------------------------

    def _setup(self, net: nn.Module, card: ModelCard) -> None:
        """Build the model(s); subclasses (TensorRT) replace this."""
        self.model = build_device_model(net, card, self.precision, self.channels_last)
        self.model.to(self.device)

    def _module_for(self, size: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
        """The callable mapping resized float NHWC frames of ``size`` to densities."""
        return self.model

    def _forward(self, frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = resize_frames(frames, size, self.resize_mode)
        return self._module_for(size)(x).float()

    # -- public API ----------------------------------------------------------------------------

    def infer(self, frames: np.ndarray) -> np.ndarray:
        """Densities for ``uint8`` BGR frames ``N x H x W x 3`` at the model input size."""
        frames = self._check_frames(frames)
        return self.infer_resized(frames, (frames.shape[1], frames.shape[2]))

    def infer_resized(self, frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Densities for ``uint8`` BGR frames of any size, resized on the device to ``size`` =
        (height, width), which must be multiples of ``card.input_multiple``."""
        frames = self._check_frames(frames)
        size = self._check_size(size)
        n = frames.shape[0]
        if self.max_batch and n > self.max_batch:
            parts = [self._run(frames[i:i + self.max_batch], size)
                     for i in range(0, n, self.max_batch)]
            return np.concatenate(parts, axis=0)
        return self._run(frames, size)

    def warmup(self, batch: int, frame_size: tuple[int, int],
               size: tuple[int, int] | None = None) -> None:
        """Run once for a batch shape so buffers are allocated and the CUDA graph captured."""
        h, w = frame_size
        self.infer_resized(np.zeros((batch, h, w, 3), np.uint8), size or (h, w))

    def describe(self) -> dict[str, object]:
        d: dict[str, object] = {
            "backend": self.name, "precision": self.precision, "device": str(self.device),
            "cuda_graphs": self.cuda_graphs, "channels_last": self.channels_last,
            "resize": self.resize_mode, "torch": torch.__version__,
            "shapes_prepared": len(self._slots)}
        if self.gpu is not None:
            d.update(gpu=self.gpu.name, capability=self.gpu.capability,
                     cuda=self.gpu.torch_cuda)
        return d

    # -- internals -----------------------------------------------------------------------------

    def _check_frames(self, frames: np.ndarray) -> np.ndarray:
        if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames N x H x W x 3, got {frames.dtype} "
                             f"{frames.shape}")
        if frames.shape[0] == 0:
            raise ValueError("empty batch")
        return np.ascontiguousarray(frames)

    def _check_size(self, size: tuple[int, int]) -> tuple[int, int]:
        h, w = int(size[0]), int(size[1])
        m = self.card.input_multiple
        if h <= 0 or w <= 0 or h % m or w % m:
            raise ValueError(f"input size {w}x{h} is not a positive multiple of {m}")
        return h, w

    def _run(self, frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if self._stream is None:
            with torch.inference_mode():
                return self._forward(torch.from_numpy(frames), size).cpu().numpy()
        slot = self._slot(frames.shape, size)
        assert slot.host_in is not None and slot.dev_in is not None
        slot.host_in.numpy()[...] = frames
        with torch.inference_mode(), torch.cuda.stream(self._stream):
            slot.dev_in.copy_(slot.host_in, non_blocking=True)
            if slot.graph is not None:
                slot.graph.replay()
            else:
                slot.dev_out = self._forward(slot.dev_in, size)
            assert slot.dev_out is not None
            if slot.host_out is None or slot.host_out.shape != slot.dev_out.shape:
                slot.host_out = torch.empty(slot.dev_out.shape, dtype=torch.float32,
                                            pin_memory=True)
            slot.host_out.copy_(slot.dev_out, non_blocking=True)
        self._stream.synchronize()
        return slot.host_out.numpy().copy()

    def _slot(self, shape: tuple[int, ...], size: tuple[int, int]) -> _Slot:
        key = (tuple(shape), size)
        slot = self._slots.get(key)
        if slot is not None:
            self._slots.move_to_end(key)
            return slot
        while len(self._slots) >= self._max_slots:
            old_key, _ = self._slots.popitem(last=False)
            log.debug("dropping CUDA buffers for %s", old_key)
        # torch.empty launches no kernel: nothing on the default stream races our stream
        slot = _Slot(host_in=torch.empty(shape, dtype=torch.uint8, pin_memory=True),
                     dev_in=torch.empty(shape, dtype=torch.uint8, device=self.device))
        if self.cuda_graphs:
            self._capture(slot, size)
        self._slots[key] = slot
        return slot

    def _capture(self, slot: _Slot, size: tuple[int, int]) -> None:
        assert self._stream is not None and slot.dev_in is not None
        with torch.inference_mode():
            with torch.cuda.stream(self._stream):
                for _ in range(2):  # warm-up before capture (allocator, cuDNN autotune)
                    self._forward(slot.dev_in, size)
            self._stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self._stream):
                slot.dev_out = self._forward(slot.dev_in, size)
        slot.graph = graph
        log.debug("captured CUDA graph for frames %s -> input %s", tuple(slot.dev_in.shape), size)
