"""`streamcount` command line: one module per sub-command under ``streamcount.cli``.

Each command module defines ``add_parser(subparsers)`` (registering its parser with
``set_defaults(func=run)``) and ``run(args) -> int``. A :class:`UserError` becomes one line on
stderr and exit code 2; ``--debug`` shows tracebacks.

Start-up is kept short: only the module of the command being run is imported (``--help``
lists the others from :data:`COMMANDS` without importing them), and command modules import
torch, OpenVINO, NNCF or ONNX Runtime only where a command needs them. ``--verbose`` logs where
a command's start-up went (:mod:`streamcount.startup`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from collections.abc import Collection, Sequence

from streamcount import startup
from streamcount.errors import UserError

#: sub-command modules, in the order ``--help`` lists them, with their one-line help (each
#: module's ``add_parser`` uses the same text; a test keeps them equal)
COMMANDS: dict[str, str] = {
    "count": "count people in a video file, image, folder of images or stream URL",
    "run": "run the live counting service on the cameras of a config file",
    "calibrate": "pick a camera's inference size from a few frames counted by eye",
    "validate": "check a service config file",
    "models": "list, inspect, import and export models",
    "bench": "benchmark backends and stream capacity",
    "engines": "build, list or clear TensorRT engines",
}

log = logging.getLogger("streamcount")


def build_parser(load: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The top-level parser.

    Args:
        load: the sub-commands whose modules are imported and whose full parsers are built
            (None: all of them); the others are listed by name and help only.
    """
    parser = argparse.ArgumentParser(
        prog="streamcount",
        description="Real-time crowd counting on video files, images and camera streams.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log progress at INFO, with a start-up breakdown")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        if load is not None and name not in load:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        try:
            mod = importlib.import_module(f"streamcount.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"streamcount.cli.{name}":
                continue  # command not part of this build
            raise
        mod.add_parser(sub)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (the first argument that is not an option), if any;
    the top-level options take no values."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``streamcount`` console script."""
    # OpenMP threads busy-wait by default; on a small shared CPU (decode threads, several
    # cameras) that cost several times the CPU per inference here. Must precede torch's import.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    startup.begin()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = command_of(argv)
    parser = build_parser(load=() if command is None else (command,))
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from streamcount.config.redact import install_log_redaction

    install_log_redaction()
    startup.mark("imports")
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
