"""``streamcount validate CONFIG``: check a service config without starting anything.

Prints every problem as ``CONFIG:LINE: key.path: message`` and exits 2, or prints
``CONFIG: OK (N cameras, M regions)`` and exits 0. Credentials never appear in the output.
``--shards COUNT`` also prints which replica of COUNT runs each enabled camera (``run
--shard INDEX/COUNT``), to see what moves before changing the number of replicas.
"""

from __future__ import annotations

import argparse
import sys

from streamcount.config.loader import check_config
from streamcount.config.redact import install_log_redaction, redact


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``validate`` sub-command."""
    p = subparsers.add_parser(
        "validate", help="check a service config file",
        description="Check a service config (YAML): keys, values, camera sources, region "
                    "polygons, alert rules, ${ENV} variables and secrets. Every problem is "
                    "printed as CONFIG:LINE: key.path: message.")
    p.add_argument("config", metavar="CONFIG", help="the service config (YAML)")
    p.add_argument("--shards", type=int, metavar="COUNT",
                   help="also print which replica of COUNT (run --shard INDEX/COUNT) runs "
                        "each enabled camera")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Validate ``args.config``; 0 when valid, 2 otherwise."""
    install_log_redaction()
    from streamcount.sharding import Shard, assign

    if args.shards is not None:
        Shard(0, args.shards)  # a bad count is one line, exit 2
    cfg, issues = check_config(args.config)
    if cfg is None:
        for issue in issues:
            print(redact(issue.format(args.config)), file=sys.stderr)
        n = len(issues)
        print(f"{args.config}: {n} problem{'s' if n != 1 else ''}", file=sys.stderr)
        return 2
    summary = cfg.summary()
    c, r = summary["cameras"], summary["regions"]
    print(f"{args.config}: OK ({c} camera{'s' if c != 1 else ''}, "
          f"{r} region{'s' if r != 1 else ''})")
    if args.shards is not None:
        for index, names in assign([c.name for c in cfg.enabled_cameras()], args.shards).items():
            print(f"shard {index}/{args.shards}: {', '.join(names) or '(none)'}")
    return 0
