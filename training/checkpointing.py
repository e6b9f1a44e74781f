"""Training checkpoints: save / load, compact optimiser state, the deploy network inside.

``last.pt`` holds everything needed to resume (trainable weights, optimiser, epoch / step,
training minutes, RNG state, history, best list) plus the resolved config, the validation split
and the seeds; ``best_*.pt`` hold the weights, config, split and validation metrics.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from streamcount.errors import UserError
from training.config import TrainConfig

CHECKPOINT_VERSION = 1


def _compact(state: Any) -> Any:
    """Floating tensors of a (nested) state as bf16: half-size optimiser state."""
    if isinstance(state, torch.Tensor):
        return state.to(torch.bfloat16) if state.is_floating_point() and state.dim() > 0 else state
    if isinstance(state, dict):
        return {k: _compact(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_compact(v) for v in state]
    return state


def uncompact_state(state: Any) -> Any:
    """Undo :func:`_compact` (bf16 tensors back to fp32)."""
    if isinstance(state, torch.Tensor):
        return state.float() if state.dtype == torch.bfloat16 else state
    if isinstance(state, dict):
        return {k: uncompact_state(v) for k, v in state.items()}
    if isinstance(state, list):
        return [uncompact_state(v) for v in state]
    return state


def trainable_state(task: nn.Module) -> dict[str, torch.Tensor]:
    """State of everything trained (the SKT teacher is excluded: it is frozen and reloaded)."""
    return {k: v.detach().cpu().clone() for k, v in task.state_dict().items()
            if not k.startswith("teacher.")}


def deploy_prefix(task: nn.Module) -> str:
    """State-dict prefix of the deploy network inside the task (e.g. ``net.``)."""
    target = task.deploy_net()
    for name, mod in task.named_modules():
        if mod is target:
            return f"{name}." if name else ""
    raise ValueError("deploy network is not a sub-module of the task")


def deploy_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The deploy network's weights (no adapters, no teacher) from a checkpoint."""
    pre = ckpt["deploy_prefix"]
    return {k[len(pre):]: v for k, v in ckpt["model"].items() if k.startswith(pre)}


def deploy_network(ck: dict[str, Any]) -> nn.Module:
    """The deploy network of a checkpoint, ``1 / data.target_scale`` folded into its last conv
    (so its maps are true densities), in eval mode."""
    from streamcount.models.registry import build
    from streamcount.models.weights import load_state_checked

    net = build(ck["arch"])
    load_state_checked(net, deploy_state(ck), f"checkpoint ({ck['arch']})")
    from training.tasks import scale_output

    scale_output(net, 1.0 / float(ck["config"]["data"].get("target_scale", 1.0)))
    return net.eval()


def save_checkpoint(path: Path, *, cfg: TrainConfig, task: nn.Module, epoch: int, step: int,
                    global_it: int, train_minutes: float = 0.0, optimizer=None, scaler=None,
                    metrics=None, history=None,
                    split=None, best=None, ema=None) -> None:
    ckpt: dict[str, Any] = {
        "version": CHECKPOINT_VERSION,
        "config": cfg.model_dump(mode="json"),
        "arch": cfg.task.arch,
        "task": cfg.task.kind,
        "model": trainable_state(task),
        "deploy_prefix": deploy_prefix(task),
        "epoch": epoch, "step": step, "global_it": global_it, "train_minutes": train_minutes,
        "metrics": metrics or {}, "history": history or [], "split": split or {},
        "best": best or [],
        "seeds": {"run": cfg.run.seed, "split": cfg.data.split_seed},
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                "python": random.getstate()},
    }
    if optimizer is not None:
        opt = optimizer.state_dict()
        ckpt["optimizer"] = _compact(opt) if cfg.run.compact_checkpoint else opt
        ckpt["optimizer_compact"] = cfg.run.compact_checkpoint
    if scaler is not None and scaler.is_enabled():
        ckpt["scaler"] = scaler.state_dict()
    if ema is not None:
        ckpt["ema"] = ema  # WeightAverage.state_dict(): resumed runs continue the same average
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p}")
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a user-facing bad file
        raise UserError(f"{p}: not a training checkpoint ({e})") from None
