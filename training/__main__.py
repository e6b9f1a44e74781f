"""``python -m training {train,evaluate,export,experiment,widen} ...``: the training tools."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": "training.train",
    "evaluate": "training.evaluate",
    "export": "training.export",
    "experiment": "training.experiment",
    "widen": "training.widen",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m training {{{','.join(COMMANDS)}}} [args]  (each has --help)",
              file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
