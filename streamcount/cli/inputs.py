"""Several inputs for ``streamcount count``: an inputs list file, output folders, sharding.

With more than one input (or ``--inputs`` or ``--shard``) each input gets its own output
folder ``OUT/<name>``, ``name`` being the input's file stem (URLs: host and path), made unique
over the whole list (``-2``, ``-3``...). That name is also the key a shard is chosen by, so every
replica of an Indexed Job agrees on who counts what and writes where, wherever the videos are
mounted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from streamcount.errors import InputError
from streamcount.sharding import Shard

_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_.-]+")
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class InputJob:
    """One input to count and where its outputs go."""

    input: str
    name: str
    out_dir: Path


def read_inputs_file(path: str | Path) -> list[str]:
    """The inputs listed in ``path``: one per line, blank lines and ``#`` comments ignored;
    relative paths are relative to the list file's directory, URLs are kept as they are.

    Raises:
        InputError: the file cannot be read.
    """
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the inputs list {p}: {getattr(e, 'strerror', None) or e}"
                         ) from None
    out = []
    for line in lines:
        item = line.split("#", 1)[0].strip() if not _URL_RE.match(line.strip()) else line.strip()
        if not item:
            continue
        if not _URL_RE.match(item) and not Path(item).expanduser().is_absolute():
            item = str(p.parent / item)
        out.append(item)
    return out


def output_name(item: str) -> str:
    """A folder name for an input: the file stem, or host and path of a URL."""
    if _URL_RE.match(item):
        parts = urlsplit(item)
        base = f"{parts.hostname or 'stream'}{parts.path}"
    else:
        base = Path(item.rstrip("/")).stem or "input"
    return _UNSAFE_RE.sub("_", base).strip("_.") or "input"


def plan(inputs: Sequence[str], out: str | Path, *, shard: Shard | None = None,
         separate: bool = False) -> list[InputJob]:
    """The inputs this process counts (all, or the shard's) with their output folders.

    Args:
        inputs: every input, in order (the whole list, also when sharded).
        out: the ``--out`` folder.
        shard: count only the inputs this shard owns (by output name).
        separate: give each input its own ``OUT/<name>`` even when there is only one
            (``--inputs`` and ``--shard`` always do).
    """
    out = Path(out)
    if len(inputs) == 1 and not separate and shard is None:
        return [InputJob(inputs[0], output_name(inputs[0]), out)]
    used: set[str] = set()
    jobs = []
    for item in inputs:
        base = name = output_name(item)
        n = 1
        while name in used:
            n += 1
            name = f"{base}-{n}"
        used.add(name)
        jobs.append(InputJob(item, name, out / name))
    if shard is not None:
        owned = set(shard.select(j.name for j in jobs))
        jobs = [j for j in jobs if j.name in owned]
    return jobs
