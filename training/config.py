"""Training configuration: pydantic models, YAML loading and ``key=value`` CLI overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamcount.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CropCfg(_Strict):
    """Training crops (see :mod:`training.datasets.transforms`)."""

    mode: Literal["ratio", "fixed"] = "ratio"
    ratio: tuple[float, float] = (0.5, 1.0)
    crop_size: int = 384
    scale: tuple[float, float] = (1.0, 1.0)
    #: "uniform" in s, or "log": uniform in log s (as many crops shrink as enlarge people)
    scale_dist: Literal["uniform", "log"] = "uniform"
    #: how a window is enlarged to crop_size when s > 1: "linear", or "cubic" (cv2's bicubic,
    #: which is how frames are usually upscaled, e.g. by the scale test)
    upscale: Literal["linear", "cubic"] = "linear"
    #: fixed crops: probability that a window is placed around a random annotated head
    #: (dense crowds are then trained on in proportion to their count, not their area)
    on_people: float = Field(0.0, ge=0, le=1)
    flip: float = 0.2
    replicate: int = 4


class DataCfg(_Strict):
    """Which images train and validate, and how their density maps are made."""

    dataset: Literal["shanghaitech", "ucf_qnrf", "ucf_cc_50", "jhu", "nwpu",
                     "points"] = "shanghaitech"
    root: str = "../shared/data/shanghaitech"
    #: one split, or several joined with ``+`` (e.g. ``part_A/train_data+part_B/train_data``:
    #: one model for sparse and dense crowds; their density rule must agree, see ``rule``)
    train_split: str = "part_B/train_data"
    #: images held out of each train split for validation (disjoint, chosen with split_seed)
    val_images: int = 40
    #: a separate validation split instead of a hold-out (e.g. a dataset's own val/)
    val_split: str | None = None
    split_seed: int = 0
    rule: Literal["auto", "adaptive", "fixed", "qnrf"] = "auto"
    sigma: float = 15.0
    border: Literal["drop", "renormalize"] = "drop"  # drop = official (mass lost at borders)
    #: targets are multiplied by this during training (the network learns scaled densities);
    #: evaluation and export divide the last conv by it, so deployed maps are true densities
    target_scale: float = 1.0
    cache_dir: str | None = None
    crop: CropCfg = Field(default_factory=CropCfg)
    val_max_side: int | None = 960
    limit_train: int | None = None  # use only the first N training images (tests, tiny runs)
    workers: int = 0
    #: keep decoded images and density maps in memory (fast; large datasets such as UCF-QNRF
    #: at full resolution need false: maps are then read from the on-disk cache each time)
    in_memory: bool = True


class TaskCfg(_Strict):
    """What is trained."""

    kind: Literal["teacher", "student", "skt"] = "student"
    arch: str = "csrnet_1_4"
    init: str | None = None
    teacher: str | None = None  # SKT: teacher weights (.safetensors or CSRNet-pytorch .pth.tar)
    #: SKT with one teacher per training dataset instead of ``teacher``: {dataset: weights},
    #: the dataset as images are named in a run's split (e.g. ``shanghaitech/part_A``); each
    #: crop is taught by its own dataset's teacher (e.g. csrnet_sha on SHA, the SHB teacher on SHB)
    teachers: dict[str, str] | None = None
    teacher_arch: str = "csrnet"
    lambda_fsp: float = 0.5
    lambda_cos: float = 0.5
    #: SKT adapters: kaiming (official, for a student trained from scratch) or lstsq (fitted to
    #: the teacher's features on ``adapter_fit_batches`` training batches; for fine-tuning a
    #: trained student with SKT)
    adapter_init: Literal["kaiming", "lstsq"] = "kaiming"
    adapter_fit_batches: int = 8
    #: teacher/student: weight of the per-crop count loss (squared error in people) added to
    #: the pixel-wise SSE; 0 = the official recipe
    lambda_count: float = Field(0.0, ge=0)
    #: with lambda_count: also count each crop shown at half its size against the same GT count
    count_half: bool = False


class OptimCfg(_Strict):
    """Optimiser and learning-rate schedule (per iteration)."""

    name: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-4
    weight_decay: float = 5e-4
    momentum: float = 0.95
    schedule: Literal["constant", "cosine", "step"] = "constant"
    warmup_iters: int = 0
    min_lr_ratio: float = 0.01
    step_epochs: list[int] = Field(default_factory=list)
    gamma: float = 0.1
    grad_clip: float | None = None
    #: CPU budget runs: the schedule progresses by max(iterations / total, training minutes /
    #: schedule_minutes), so a cosine decay completes within a time budget (minutes are summed
    #: over resumed runs; this makes the schedule depend on machine speed)
    schedule_minutes: float | None = None
    #: keep an exponential moving average of the weights (decay per iteration, e.g. 0.995 =
    #: about the last 200 iterations); validation, best checkpoints and export then use the
    #: average (see :mod:`training.ema`); None = off
    ema_decay: float | None = Field(None, gt=0, lt=1)


class RunCfg(_Strict):
    """Loop, budget, precision, checkpoints."""

    out_dir: str = "runs/train"
    epochs: int = 1000
    batch_size: int = 1
    seed: int = 0
    max_minutes: float | None = None
    #: what max_minutes and schedule_minutes count: ``wall`` time, or ``cpu`` = this process's
    #: CPU seconds / threads (= wall on an idle machine; fair budgets on a shared one)
    clock: Literal["wall", "cpu"] = "wall"
    max_iters: int | None = None  # stop after this many iterations in this process (tests)
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    threads: int | None = None
    device: str = "auto"
    val_every: int = 1
    checkpoint_minutes: float = 5.0
    keep_best: int = 3
    log_every: int = 20
    compact_checkpoint: bool = True  # optimiser state stored as bf16 in last.pt (small files)
    progress: bool = True


class TrainConfig(_Strict):
    """The full, resolved training configuration (saved in every checkpoint)."""

    name: str = "train"
    data: DataCfg = Field(default_factory=DataCfg)
    task: TaskCfg = Field(default_factory=TaskCfg)
    optim: OptimCfg = Field(default_factory=OptimCfg)
    run: RunCfg = Field(default_factory=RunCfg)


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        nxt = d.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"cannot set {dotted}: {k} is not a section", key=dotted)
        d = nxt
    d[keys[-1]] = value


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML recipe and apply ``section.key=value`` overrides (values parsed as YAML)."""
    raw: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("config file not found", path=str(p))
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"invalid YAML ({e})", path=str(p)) from None
        if not isinstance(raw, dict):
            raise ConfigError("top level must be a mapping", path=str(p))
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override '{ov}' must look like section.key=value")
        k, v = ov.split("=", 1)
        _set(raw, k.strip(), yaml.safe_load(v))
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(x) for x in err["loc"])
        raise ConfigError(err["msg"], path=str(path) if path else None, key=key) from None
