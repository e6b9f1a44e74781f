"""`streamcount` command line: one module per sub-command under ``streamcount.cli``.

Each command module defines ``add_parser(subparsers)`` (registering its parser with
``set_defaults(func=run)``) and ``run(args) -> int``. A :class:`UserError` becomes one line on
stderr and exit code 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from streamcount.config.redact import install_log_redaction
from streamcount.errors import UserError

#: sub-command modules, in the order ``--help`` lists them
COMMANDS: tuple[str, ...] = ("count", "run", "calibrate", "validate", "models", "bench",
                              "engines")

log = logging.getLogger("streamcount")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="streamcount",
        description="Real-time crowd counting on video files, images and camera streams.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"streamcount.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"streamcount.cli.{name}":
                continue  # command not part of this build
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``streamcount`` console script."""
    # OpenMP threads busy-wait by default; on a small shared CPU (decode threads, several
    # cameras) that cost several times the CPU per inference here. Must precede torch's import.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        if args.debug:
            raise
        print(f"streamcount: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("streamcount: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into e.g. `head`: not an error; silence the flush at exit
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0


if __name__ == "__main__":
    sys.exit(main())
