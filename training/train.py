"""Train a counting network: ``python -m training.train --config configs/train/X.yaml k=v ...``.

- The resolved config, the validation split and the seeds are saved in every checkpoint.
- Resume: ``--resume FILE``, or automatically from ``<out_dir>/last.pt`` (mid-epoch too).
- ``run.max_minutes`` stops cleanly (saving ``last.pt``); rerun the same command to continue.
- Best ``run.keep_best`` checkpoints by validation MAE (``best_*.pt``, weights only).
- Validation is a hold-out of the training split (``data.val_images`` images chosen with
  ``data.split_seed``), disjoint from training. The official SKT split overlaps training
  (skt.md section 3.4); this does not.
- Metrics: ``mae``, ``rmse`` of the predicted sum against the annotated point count.
- AMP: ``auto`` = bf16 autocast on CUDA (fp16 + GradScaler where bf16 is unsupported), off on CPU;
  ``bf16`` forces bf16 autocast (also on CPU).
- DDP: under ``torchrun`` (``WORLD_SIZE`` set) the process group is initialised, the batch is
  per process and samples are sharded like ``DistributedSampler`` (same permutation rule), with
  a resumable start offset.
- Logs: ``train.csv``, ``val.csv`` in ``out_dir`` (and TensorBoard if installed).
- A stop by ``run.max_minutes`` mid-epoch validates the final weights too (a best candidate).
  ``run.clock: cpu`` counts budgets in this process's CPU time per thread instead of wall time:
  two runs compared "for the same CPU time" get it even while other work shares the machine.
- Not in the official recipe, for short CPU runs: ``optim.schedule_minutes`` (a cosine that
  completes within a time budget), ``data.target_scale`` (learn k x density; evaluation and
  export divide it out) and ``data.border: renormalize`` (maps sum to the annotated count).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler

from streamcount.errors import ConfigError, UserError
from training.checkpointing import load_checkpoint, save_checkpoint, uncompact_state
from training.config import TrainConfig, load_config
from training.datasets import default_rule, load_items
from training.datasets.common import AnnotatedImage
from training.datasets.density import DensityCache, DensityRule
from training.datasets.transforms import CropPolicy, EvalImages, TrainCrops
from training.ema import WeightAverage
from training.tasks import build_task

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- data

def make_rule(cfg: TrainConfig) -> DensityRule:
    """The density rule of the config (``auto`` = the dataset's official rule)."""
    d = cfg.data
    if d.rule == "auto":
        rules = {default_rule(d.dataset, s) for s in train_splits(cfg)}
        if len(rules) > 1:
            raise ConfigError(f"data.train_split {d.train_split!r} mixes splits whose official "
                              f"density rules differ; set data.rule (e.g. adaptive)",
                              key="data.rule")
        rule = rules.pop()
    else:
        rule = DensityRule(d.rule, sigma=d.sigma)
    return replace(rule, border=d.border)


def train_splits(cfg: TrainConfig) -> list[str]:
    """``data.train_split`` as a list: several splits are joined with ``+``."""
    return [s.strip() for s in cfg.data.train_split.split("+") if s.strip()]


def item_id(item: AnnotatedImage, qualified: bool) -> str:
    """An image's id in a checkpoint's recorded split: ``image_id``, or with several train
    splits (whose ids may repeat, e.g. SHA's and SHB's ``train_data/IMG_1``)
    ``dataset/image_id``."""
    return f"{item.dataset}/{item.image_id}" if qualified else item.image_id


def held_out_items(ck: dict[str, Any], dataset: str, root: str) -> list[AnnotatedImage]:
    """The validation hold-out recorded in checkpoint ``ck``, loaded from ``root``."""
    splits = [s for s in ck["config"]["data"]["train_split"].split("+") if s.strip()]
    ids = set(ck["split"]["val"])
    return [it for s in splits for it in load_items(dataset, root, s.strip())
            if item_id(it, len(splits) > 1) in ids]


def split_items(cfg: TrainConfig) -> tuple[list[AnnotatedImage], list[AnnotatedImage]]:
    """Training and validation images; a hold-out is disjoint from training."""
    d = cfg.data
    train, val = [], []
    for split in train_splits(cfg):
        items = load_items(d.dataset, d.root, split)
        if d.val_split:
            train += items
            continue
        # each split its own hold-out of val_images (so a split's hold-out does not depend on
        # which other splits are trained with it)
        n_val = min(d.val_images, max(0, len(items) - 1))
        order = np.random.default_rng(d.split_seed).permutation(len(items))
        val_idx = set(order[:n_val].tolist())
        val += [it for i, it in enumerate(items) if i in val_idx]
        train += [it for i, it in enumerate(items) if i not in val_idx]
    if d.val_split:
        val = load_items(d.dataset, d.root, d.val_split)
    if d.limit_train:
        train = train[:d.limit_train]
    return train, val


class ResumableSampler(Sampler[int]):
    """``DistributedSampler``'s shuffling and sharding, starting at a given position.

    Permutation: ``torch.randperm(n, generator=seed + epoch)``, padded to a multiple of the
    world size, shard ``rank::world`` (as ``DistributedSampler``); ``start`` skips the first
    samples of this rank's shard (mid-epoch resume).
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch = 0
        self.start = 0
        self.per_rank = math.ceil(n / world)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        idx = torch.randperm(self.n, generator=g).tolist()
        idx += idx[: self.per_rank * self.world - len(idx)]
        return iter(idx[self.rank::self.world][self.start:])

    def __len__(self) -> int:
        return self.per_rank - self.start


# ----------------------------------------------------------------------------- runtime

class Runtime:
    """Device, precision and distributed state of this process."""

    def __init__(self, cfg: TrainConfig) -> None:
        r = cfg.run
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        want = r.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want.startswith("cuda"):
            if not torch.cuda.is_available():
                raise UserError("run.device is cuda but no CUDA device is available")
            if self.world > 1:
                want = f"cuda:{self.local_rank}"
            elif want == "cuda":
                want = f"cuda:{torch.cuda.current_device()}"
            torch.cuda.set_device(torch.device(want))
        self.device = torch.device(want)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if r.threads:
            torch.set_num_threads(r.threads)
        amp = r.amp
        self.amp_dtype: torch.dtype | None = None
        if amp == "auto":
            if self.device.type == "cuda":
                self.amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported()
                                  else torch.float16)
        elif amp == "bf16":
            self.amp_dtype = torch.bfloat16
        elif amp == "fp16":
            self.amp_dtype = torch.float16
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp_dtype == torch.float16 and self.device.type == "cuda")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- optimiser

def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    o = cfg.optim
    params = [p for p in params if p.requires_grad]
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def lr_factor(cfg: TrainConfig, it: int, iters_per_epoch: int,
              train_minutes: float = 0.0) -> float:
    """Learning-rate multiplier at global iteration ``it`` (and training minutes so far)."""
    o = cfg.optim
    total = max(1, cfg.run.epochs * iters_per_epoch)
    f = 1.0
    if o.schedule == "cosine":
        t = it / total
        if o.schedule_minutes:
            t = max(t, train_minutes / o.schedule_minutes)
        t = min(1.0, t)
        f = o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    elif o.schedule == "step":
        epoch = it // max(1, iters_per_epoch)
        f = o.gamma ** sum(1 for e in o.step_epochs if epoch >= e)
    if o.warmup_iters and it < o.warmup_iters:
        f *= (it + 1) / o.warmup_iters
    return f


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate_task(task: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
    """MAE / RMSE of predicted sums against annotated counts (fp32, batch by batch)."""
    was = task.training
    task.eval()
    errs = []
    for x, _y, count in loader:
        pred = task.predict(x.to(device)).float().sum(dim=(1, 2, 3)).cpu()
        errs.extend((pred - count.float()).tolist())
    task.train(was)
    e = np.asarray(errs, dtype=np.float64)
    if len(e) == 0:
        return {"mae": float("nan"), "rmse": float("nan"), "images": 0}
    return {"mae": float(np.abs(e).mean()), "rmse": float(np.sqrt((e ** 2).mean())),
            "images": int(len(e))}


# ----------------------------------------------------------------------------- logging

class CsvLog:
    """Append rows to a CSV file, writing the header once."""

    def __init__(self, path: Path, fields: list[str]) -> None:
        self.path, self.fields = path, fields
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            with path.open("w", newline="") as f:
                csv.writer(f).writerow(fields)

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.fields])


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # noqa: BLE001 - tensorboard is optional
        return None
    return SummaryWriter(str(out_dir / "tb"))


# ----------------------------------------------------------------------------- training

def _budget_clock(cfg: TrainConfig) -> Callable[[], float]:
    """Seconds by ``run.clock``: wall (monotonic) or this process's CPU time per thread."""
    if cfg.run.clock == "wall":
        return time.monotonic
    threads = max(1, cfg.run.threads or torch.get_num_threads())
    return lambda: time.process_time() / threads


def train(cfg: TrainConfig, resume: str | None = None) -> dict[str, Any]:
    """Run (or continue) training; returns a summary dict (best metrics, stop reason)."""
    clock = _budget_clock(cfg)
    t_start = clock()
    if cfg.task.kind == "skt" and (cfg.task.lambda_count or cfg.task.count_half):
        raise ConfigError("task.lambda_count / task.count_half apply to kind teacher and "
                          "student, not skt", key="task.lambda_count")
    if cfg.task.kind == "skt" and not (cfg.task.teacher or cfg.task.teachers):
        raise ConfigError("task.teacher is required for kind=skt (a trained teacher file)",
                          key="task.teacher")
    if cfg.task.teachers and (cfg.task.kind != "skt" or cfg.task.teacher):
        raise ConfigError("task.teachers (one teacher per dataset) is for kind=skt, instead of "
                          "task.teacher", key="task.teachers")
    rt = Runtime(cfg)
    out = Path(cfg.run.out_dir)
    seed_everything(cfg.run.seed + rt.rank)

    rule = make_rule(cfg)
    cache = DensityCache(cfg.data.cache_dir)
    train_items, val_items = split_items(cfg)
    multi = len(train_splits(cfg)) > 1
    split = {"train": [item_id(it, multi) for it in train_items],
             "val": [item_id(it, multi) for it in val_items], "split_seed": cfg.data.split_seed,
             "rule": rule.key}
    if rt.main:
        log.info("train %d images, val %d images (rule %s)", len(train_items), len(val_items),
                 rule.key)
    c = cfg.data.crop
    policy = CropPolicy(c.mode, tuple(c.ratio), c.crop_size, tuple(c.scale), c.flip, c.replicate,
                        c.scale_dist, c.upscale, c.on_people)
    stride = 8
    train_ds = TrainCrops(train_items, rule, cache, policy, stride=stride, seed=cfg.run.seed,
                          in_memory=cfg.data.in_memory)
    task_kw: dict[str, Any] = {"arch": cfg.task.arch, "init": cfg.task.init,
                               "target_scale": cfg.data.target_scale}
    if cfg.task.kind == "skt":
        task_kw.update(teacher=cfg.task.teacher, teacher_arch=cfg.task.teacher_arch,
                       lambda_fsp=cfg.task.lambda_fsp, lambda_cos=cfg.task.lambda_cos)
        if cfg.task.teachers:
            task_kw.update(teacher=None, teachers=_teacher_per_domain(cfg, train_ds.domains))
    elif cfg.task.lambda_count:
        task_kw.update(lambda_count=cfg.task.lambda_count, count_half=cfg.task.count_half)
    task = build_task(cfg.task.kind, **task_kw).to(rt.device)
    routed = bool(getattr(task, "routed", False))
    if c.mode == "ratio" and c.on_people:
        raise ConfigError("applies to fixed crops only (data.crop.mode=fixed); "
                          "ratio crops are placed uniformly", key="data.crop.on_people")
    if c.mode == "ratio" and cfg.run.batch_size != 1:
        raise UserError("data.crop.mode=ratio gives variable-size crops: run.batch_size must be 1")
    sampler = ResumableSampler(len(train_ds), cfg.run.seed, rt.rank, rt.world)
    loader = DataLoader(train_ds, batch_size=cfg.run.batch_size, sampler=sampler,
                        num_workers=cfg.data.workers, drop_last=True,
                        persistent_workers=cfg.data.workers > 0)
    val_loader = None
    if val_items and rt.main:
        val_ds = EvalImages(val_items, rule, cache, cfg.data.val_max_side, preload=True)
        val_loader = DataLoader(val_ds, batch_size=1, shuffle=False)

    params = (task.trainable_parameters() if hasattr(task, "trainable_parameters")
              else task.parameters())
    optimizer = make_optimizer(cfg, params)
    ema = WeightAverage(task.deploy_net(), cfg.optim.ema_decay) if cfg.optim.ema_decay else None
    iters_per_epoch = sampler.per_rank // cfg.run.batch_size or 1

    epoch, step, global_it = 0, 0, 0
    minutes_before = 0.0  # training minutes of earlier (resumed) runs
    history: list[dict[str, Any]] = []
    best: list[dict[str, Any]] = []
    ckpt_path = Path(resume) if resume else out / "last.pt"
    if ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path)
        missing = task.load_state_dict(ck["model"], strict=False)
        bad = [k for k in missing.missing_keys if not k.startswith("teacher.")]
        if bad or missing.unexpected_keys:
            raise UserError(f"{ckpt_path}: checkpoint does not fit the task "
                            f"(missing {bad[:3]}, unexpected {missing.unexpected_keys[:3]})")
        opt_state = ck["optimizer"]
        optimizer.load_state_dict(uncompact_state(opt_state) if ck.get("optimizer_compact")
                                  else opt_state)
        if "scaler" in ck:
            rt.scaler.load_state_dict(ck["scaler"])
        if ema is not None:
            if "ema" in ck:
                ema.load_state_dict(ck["ema"])
            else:  # averaging switched on for a run that had none: start from its weights
                ema = WeightAverage(task.deploy_net(), cfg.optim.ema_decay)
        epoch, step, global_it = ck["epoch"], ck["step"], ck["global_it"]
        minutes_before = float(ck.get("train_minutes", 0.0))
        history, best = ck.get("history", []), ck.get("best", [])
        rng = ck.get("rng")
        if rng and rt.world == 1:
            torch.set_rng_state(rng["torch"])
            np.random.set_state(rng["numpy"])
            random.setstate(rng["python"])
        if rt.main:
            log.info("resumed from %s at epoch %d step %d", ckpt_path, epoch, step)
    elif cfg.task.kind == "skt" and cfg.task.adapter_init == "lstsq":
        _fit_adapters(task, train_ds, cfg, rt.device)

    model: nn.Module = task
    if rt.world > 1:
        model = nn.parallel.DistributedDataParallel(
            task, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)

    train_log = CsvLog(out / "train.csv", ["epoch", "step", "global_it", "lr", "total", "gt",
                                           "soft", "fsp", "cos", "sec_per_it", "elapsed_min"]
                       + (["count"] if cfg.task.lambda_count else []))
    val_log = CsvLog(out / "val.csv", ["epoch", "global_it", "mae", "rmse", "images"])
    tb = _tensorboard(out) if rt.main else None
    last_ckpt = time.monotonic()
    stop_reason = "epochs"
    iters_this_run = 0

    def train_minutes() -> float:
        return minutes_before + (clock() - t_start) / 60

    def save_last() -> None:
        if rt.main:
            save_checkpoint(out / "last.pt", cfg=cfg, task=task, epoch=epoch, step=step,
                            global_it=global_it, train_minutes=train_minutes(),
                            optimizer=optimizer, scaler=rt.scaler,
                            history=history, split=split, best=best,
                            ema=ema.state_dict() if ema is not None else None)

    def averaged():
        """Validation and best checkpoints see the weight average where there is one."""
        return ema.swapped_in(task.deploy_net()) if ema is not None else nullcontext()

    progress = None
    task.train()
    while epoch < cfg.run.epochs and stop_reason == "epochs":
        train_ds.set_epoch(epoch)
        sampler.set_epoch(epoch, step * cfg.run.batch_size)
        if rt.main and cfg.run.progress:
            from tqdm import tqdm
            progress = tqdm(total=iters_per_epoch, initial=step, desc=f"epoch {epoch}",
                            mininterval=30, file=sys.stderr, dynamic_ncols=False, ncols=100)
        t_it = time.monotonic()
        for x, y, _count, domain in loader:
            f = lr_factor(cfg, global_it, iters_per_epoch, train_minutes())
            for g in optimizer.param_groups:
                g["lr"] = cfg.optim.lr * f
            x, y = x.to(rt.device, non_blocking=True), y.to(rt.device, non_blocking=True)
            kw = {"domain": domain.to(rt.device)} if routed else {}
            with rt.autocast():
                losses = model(x, y, **kw)
            optimizer.zero_grad(set_to_none=True)
            rt.scaler.scale(losses["total"]).backward()
            if cfg.optim.grad_clip:
                rt.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(
                    [p for g in optimizer.param_groups for p in g["params"]], cfg.optim.grad_clip)
            rt.scaler.step(optimizer)
            rt.scaler.update()
            if ema is not None:
                ema.update(task.deploy_net())
            step += 1
            global_it += 1
            iters_this_run += 1
            if not math.isfinite(float(losses["total"].detach())):
                raise UserError(f"loss became {float(losses['total'].detach())} at iteration "
                                f"{global_it}; "
                                f"lower optim.lr or enable optim.grad_clip")
            if progress is not None:
                progress.update(1)
            if rt.main and (global_it % cfg.run.log_every == 0 or step == 1):
                now = time.monotonic()
                row = {"epoch": epoch, "step": step, "global_it": global_it,
                       "lr": cfg.optim.lr * f,
                       **{k: f"{float(v.detach()):.6g}" for k, v in losses.items()},
                       "sec_per_it": f"{(now - t_it) / max(1, cfg.run.log_every):.3f}",
                       "elapsed_min": f"{(clock() - t_start) / 60:.2f}"}
                train_log.write(row)
                if tb:
                    for k, v in losses.items():
                        tb.add_scalar(f"train/{k}", float(v.detach()), global_it)
                t_it = now
            minutes = (clock() - t_start) / 60
            if cfg.run.max_minutes is not None and minutes >= cfg.run.max_minutes:
                stop_reason = "max_minutes"
            if cfg.run.max_iters is not None and iters_this_run >= cfg.run.max_iters:
                stop_reason = "max_iters"
            if stop_reason != "epochs":
                break
            if (time.monotonic() - last_ckpt) / 60 >= cfg.run.checkpoint_minutes:
                save_last()
                last_ckpt = time.monotonic()
        if progress is not None:
            progress.close()
        if stop_reason != "epochs" and step < iters_per_epoch:
            break
        # epoch finished
        epoch += 1
        step = 0
        if val_loader is not None and (epoch % cfg.run.val_every == 0 or epoch == cfg.run.epochs):
            with averaged():
                m = evaluate_task(task, val_loader, rt.device)
                m.update(epoch=epoch, global_it=global_it)
                history.append(m)
                val_log.write(m)
                if tb:
                    tb.add_scalar("val/mae", m["mae"], global_it)
                    tb.add_scalar("val/rmse", m["rmse"], global_it)
                log.info("epoch %d: val mae %.3f rmse %.3f", epoch, m["mae"], m["rmse"])
                best = _update_best(out, cfg, task, m, best, epoch, global_it, split,
                                    train_minutes())
        save_last()
        last_ckpt = time.monotonic()
        rt.barrier()
    if stop_reason != "epochs":
        if stop_reason == "max_minutes" and val_loader is not None and step > 0:
            # the budget ends mid-epoch: validate the final (lowest-lr) weights too
            with averaged():
                m = evaluate_task(task, val_loader, rt.device)
                m.update(epoch=epoch, global_it=global_it)
                history.append(m)
                val_log.write(m)
                log.info("final (epoch %d step %d): val mae %.3f rmse %.3f", epoch, step,
                         m["mae"], m["rmse"])
                best = _update_best(out, cfg, task, m, best, epoch, global_it, split,
                                    train_minutes(), tag=f"s{step}")
        save_last()
        if rt.main:
            log.info("stopped (%s) at epoch %d step %d; rerun the same command to resume",
                     stop_reason, epoch, step)
    if tb:
        tb.close()
    return {"stop_reason": stop_reason, "epoch": epoch, "step": step, "global_it": global_it,
            "best": best, "history": history, "out_dir": str(out),
            "train_minutes": train_minutes()}


def _teacher_per_domain(cfg: TrainConfig, domains: list[str]) -> list[str]:
    """``task.teachers`` in the order of the training crops' domains; ConfigError naming the
    dataset without a teacher (or a teacher for a dataset not trained on)."""
    teachers = cfg.task.teachers or {}
    missing = [d for d in domains if d not in teachers]
    if missing:
        raise ConfigError(f"no teacher for dataset {missing[0]!r} (training images come from "
                          f"{', '.join(domains)})", key="task.teachers")
    unused = sorted(set(teachers) - set(domains))
    if unused:
        raise ConfigError(f"teacher given for {unused[0]!r}, which is not trained on (training "
                          f"images come from {', '.join(domains)})", key="task.teachers")
    return [teachers[d] for d in domains]


def _fit_adapters(task: nn.Module, ds: TrainCrops, cfg: TrainConfig,
                  device: torch.device) -> None:
    """``task.adapter_init=lstsq``: fit the adapters on fixed training crops (the same on every
    rank: ranks start from identical weights)."""
    n = cfg.task.adapter_fit_batches * cfg.run.batch_size
    idx = np.random.default_rng(cfg.run.seed).permutation(len(ds))[:n]
    ds.set_epoch(0)
    samples = [ds[int(i)] for i in idx]
    bs = cfg.run.batch_size
    batches = [torch.stack([s[0] for s in samples[i:i + bs]]).to(device)
               for i in range(0, len(samples), bs)]
    domains = [torch.tensor([s[3] for s in samples[i:i + bs]], device=device)
               for i in range(0, len(samples), bs)]
    task.fit_adapters(batches, domains if getattr(task, "routed", False) else None)
    log.info("adapters fitted to the teacher's features on %d crops (least squares)", len(samples))


def _update_best(out: Path, cfg: TrainConfig, task: nn.Module, m: dict[str, Any],
                 best: list[dict[str, Any]], epoch: int, global_it: int,
                 split: dict[str, Any], train_minutes: float = 0.0,
                 tag: str = "") -> list[dict[str, Any]]:
    """Keep the ``keep_best`` lowest-MAE weight checkpoints on disk."""
    if not math.isfinite(m["mae"]):
        return best
    if len(best) >= cfg.run.keep_best and m["mae"] >= max(b["mae"] for b in best):
        return best
    name = f"best_e{epoch:04d}{tag}_mae{m['mae']:.2f}.pt"
    save_checkpoint(out / name, cfg=cfg, task=task, epoch=epoch, step=0, global_it=global_it,
                    train_minutes=train_minutes, metrics=m, split=split)
    best = sorted(best + [{"file": name, "mae": m["mae"], "rmse": m["rmse"], "epoch": epoch}],
                  key=lambda b: b["mae"])
    for b in best[cfg.run.keep_best:]:
        (out / b["file"]).unlink(missing_ok=True)
    return best[:cfg.run.keep_best]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.train",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="YAML recipe (configs/train/*.yaml)")
    ap.add_argument("--resume", help="checkpoint to resume from (default: <out_dir>/last.pt)")
    ap.add_argument("overrides", nargs="*", help="section.key=value overrides")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
        summary = train(cfg, args.resume)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if summary["best"]:
        b = summary["best"][0]
        print(f"best: {b['file']} val mae {b['mae']:.3f} rmse {b['rmse']:.3f}")
    print(f"stopped: {summary['stop_reason']} (epoch {summary['epoch']}, "
          f"iteration {summary['global_it']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
