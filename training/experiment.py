"""The SKT comparison: teacher, student alone and SKT student with the same budget.

``python -m training.experiment --out runs/experiment [--iters N | --minutes M]
[--init STUDENT] [--set section.key=value ...] [--teacher-set ...] [--student-set ...]
[--skt-set ...] [--eval-split part_B/test_data] [--eval-limit N]``

1. trains the CSRNet teacher (``--teacher-config``, default the SHB teacher recipe),
   exports it, 2. trains the 1/4 student on GT alone and 3. the 1/4 student with SKT from that
   teacher (both from ``--student-config``, the SHB SKT recipe, with ``task.kind`` student / skt),
   each with the same budget (iterations or minutes) on the same fixed train / validation split,
4. evaluates each on the validation hold-out and once on ``--eval-split`` through
   streamcount's inference path and prints the MAE / RMSE table (also written to
   ``<out>/results.json``).

``--set`` overrides apply to all three runs (e.g. ``data.crop.mode=fixed``); ``--teacher-set``,
``--student-set`` and ``--skt-set`` to one run each (e.g. ``optim.lr=1e-5`` for the teacher: the
CSRNet recipe's lr 1e-7 assumes ImageNet initialisation, which is unavailable offline).

``--init STUDENT`` makes it the fine-tuning experiment a CPU can run: all three start from one
trained 1/4 student (a model file). The teacher starts as that student widened to CSRNet width
(:mod:`training.widen`, same function), the two students start from it, and the SKT run fits its
adapters by least squares (``task.adapter_init=lstsq``); the STUDENT row of the table is the
common starting point. Without ``--init`` it is the paper's experiment (teacher, then students
from scratch); tiny budgets then only check the plumbing: the numbers mean something only with
budgets near the paper's (hundreds of epochs on a GPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from streamcount.engine.preprocess import DEFAULT_MAX_SIDE
from streamcount.errors import UserError
from streamcount.models.card import ModelCard
from streamcount.models.csrnet import CSRNetStudent
from streamcount.models.weights import load_model, save_model
from training.config import load_config
from training.datasets import load_items
from training.evaluate import evaluate_items
from training.export import export
from training.checkpointing import load_checkpoint
from training.tasks import load_weights_into
from training.train import item_id, train, train_splits
from training.widen import widen_student

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
TEACHER_CONFIG = ROOT / "configs" / "train" / "shb_teacher.yaml"
STUDENT_CONFIG = ROOT / "configs" / "train" / "shb_skt.yaml"


def _budget(iters: int | None, minutes: float | None) -> list[str]:
    ov = ["run.epochs=1000000"]  # the budget, not the epoch count, ends each run
    if iters is not None:
        ov.append(f"run.max_iters={iters}")
    if minutes is not None:
        ov.append(f"run.max_minutes={minutes}")
    return ov


def _evaluate(model_file: Path, cfg: Any, val_ids: set[str], eval_split: str | None,
              eval_limit: int | None, max_side: int | None) -> dict[str, Any]:
    net, card = load_model(model_file)
    splits = train_splits(cfg)
    held_out = [it for s in splits for it in load_items(cfg.data.dataset, cfg.data.root, s)
                if item_id(it, len(splits) > 1) in val_ids]
    val = evaluate_items(net, card, held_out, cfg.data.val_max_side)
    row: dict[str, Any] = {"val": {"mae": val["mae"], "rmse": val["rmse"],
                                   "images": val["images"]},
                           "model": str(model_file), "arch": card.arch}
    if eval_split:
        items = load_items(cfg.data.dataset, cfg.data.root, eval_split)
        if eval_limit:
            items = items[:eval_limit]
        res = evaluate_items(net, card, items, max_side)
        row.update(mae=res["mae"], rmse=res["rmse"], images=res["images"], split=eval_split)
    return row


def run_experiment(out: Path, *, iters: int | None = None, minutes: float | None = None,
                   overrides: list[str] | None = None, teacher_overrides: list[str] | None = None,
                   student_overrides: list[str] | None = None,
                   skt_overrides: list[str] | None = None, init: Path | None = None,
                   teacher_config: Path = TEACHER_CONFIG, student_config: Path = STUDENT_CONFIG,
                   eval_split: str | None = "part_B/test_data", eval_limit: int | None = None,
                   max_side: int | None = DEFAULT_MAX_SIDE) -> dict[str, Any]:
    """Train the three models with one budget; returns the results table."""
    if iters is None and minutes is None:
        raise UserError("give a budget: --iters or --minutes")
    out.mkdir(parents=True, exist_ok=True)
    common = list(overrides or []) + _budget(iters, minutes)
    t_init: list[str] = []
    s_init: list[str] = []
    if init is not None:
        if not init.is_file():
            raise UserError(f"{init}: --init student file not found")
        student = CSRNetStudent(4)
        load_weights_into(student, init)
        widened = out / "widened_teacher_init.safetensors"
        save_model(widened, widen_student(student), ModelCard.for_arch(
            "csrnet", "widened", source=f"training.widen {init.name}"))
        t_init = [f"task.init={widened}"]
        s_init = [f"task.init={init}"]
    runs = {
        "teacher (CSRNet)": (teacher_config, ["task.kind=teacher", *t_init,
                                              *(teacher_overrides or [])]),
        "1/4 student alone": (student_config, ["task.kind=student", *s_init,
                                               *(student_overrides or [])]),
        "1/4 student + SKT": (student_config, ["task.kind=skt", *s_init,
                                               *(["task.adapter_init=lstsq"] if init else []),
                                               *(skt_overrides or [])]),
    }
    results: dict[str, Any] = {}
    teacher_file = out / "teacher.safetensors"
    split_ids: set[str] | None = None
    for label, (cfg_path, extra) in runs.items():
        key = label.split()[0] if label.startswith("teacher") else (
            "skt" if "SKT" in label else "student")
        ov = [f"run.out_dir={out / key}", *common, *extra]
        if key == "skt":
            ov.append(f"task.teacher={teacher_file}")
        cfg = load_config(cfg_path, ov)
        log.info("training %s (%s)", label, cfg.name)
        summary = train(cfg)
        last = Path(cfg.run.out_dir) / "last.pt"
        model_file = out / f"{key}.safetensors"
        export(last, model_file, name=key, source="training.experiment")
        val_ids = set(load_checkpoint(last)["split"]["val"])
        if split_ids is not None and val_ids != split_ids:
            raise UserError(f"{cfg_path}: its validation split differs from the teacher's "
                            "(data.val_images / split_seed must match)")
        split_ids = val_ids
        row = _evaluate(model_file, cfg, val_ids, eval_split, eval_limit, max_side)
        row.update(iterations=summary["global_it"],
                   minutes=round(float(summary.get("train_minutes", 0.0)), 1))
        results[label] = row
        if init is not None and len(results) == 1:  # the common starting point, same split
            start = _evaluate(init, cfg, val_ids, eval_split, eval_limit, max_side)
            results = {f"start: {init.stem}": {**start, "iterations": 0, "minutes": 0.0},
                       **results}
        (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def format_table(results: dict[str, Any]) -> str:
    """A plain-text MAE / RMSE table."""
    lines = [f"{'model':<28} {'iters':>7} {'val MAE':>9} {'val RMSE':>9} {'MAE':>9} {'RMSE':>9}"]
    for label, r in results.items():
        v = r.get("val") or {}
        lines.append(f"{label:<28} {r['iterations']:>7} {v.get('mae', float('nan')):>9.2f} "
                     f"{v.get('rmse', float('nan')):>9.2f} {r.get('mae', float('nan')):>9.2f} "
                     f"{r.get('rmse', float('nan')):>9.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.experiment",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/experiment")
    ap.add_argument("--iters", type=int, help="iterations per model")
    ap.add_argument("--minutes", type=float, help="minutes per model")
    ap.add_argument("--set", nargs="*", default=[], dest="overrides", help="overrides for all")
    ap.add_argument("--teacher-set", nargs="*", default=[], help="overrides for the teacher")
    ap.add_argument("--student-set", nargs="*", default=[],
                    help="overrides for the student trained alone")
    ap.add_argument("--skt-set", nargs="*", default=[], help="overrides for the SKT student")
    ap.add_argument("--init", type=Path,
                    help="a trained 1/4 student file: fine-tune all three from it")
    ap.add_argument("--teacher-config", type=Path, default=TEACHER_CONFIG)
    ap.add_argument("--student-config", type=Path, default=STUDENT_CONFIG)
    ap.add_argument("--eval-split", default="part_B/test_data", help="'' to skip evaluation")
    ap.add_argument("--eval-limit", type=int)
    ap.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        res = run_experiment(Path(args.out), iters=args.iters, minutes=args.minutes,
                             overrides=args.overrides, teacher_overrides=args.teacher_set,
                             student_overrides=args.student_set, skt_overrides=args.skt_set,
                             init=args.init,
                             teacher_config=args.teacher_config,
                             student_config=args.student_config,
                             eval_split=args.eval_split or None, eval_limit=args.eval_limit,
                             max_side=args.max_side or None)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
