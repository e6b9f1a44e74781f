"""Sharding cameras (and recorded inputs) across replicas by rendezvous hashing.

Each of ``COUNT`` replicas runs with a :class:`Shard` ``INDEX/COUNT`` and owns the names whose
highest-random-weight (HRW, rendezvous) score is its own: for a name, every replica index gets
the score ``blake2b(name, index)`` and the highest wins. The assignment is therefore

- **coordination-free**: every replica computes it from the name list alone, no broker or
  lease needed (Kubernetes keeps the replica count and the pod ordinals);
- **stable**: the hash is :mod:`hashlib`'s (not Python's per-process ``hash()``), so every
  process, host and Python version agrees;
- **minimal on change**: going from ``N`` to ``N+1`` replicas moves only the names the new
  replica wins (about ``1/(N+1)``); going down moves only the removed replica's names.

Where the shard comes from (:func:`resolve_shard`): ``--shard INDEX/COUNT``, else
``STREAMCOUNT_SHARD=INDEX/COUNT``, else ``STREAMCOUNT_SHARD_COUNT`` with the index from
``STREAMCOUNT_SHARD_INDEX`` (a StatefulSet passes its pod-index label through the downward API),
``JOB_COMPLETION_INDEX`` (an Indexed Job) or the ordinal suffix of ``HOSTNAME`` (a StatefulSet
pod ``streamcount-2``).

Example:
    >>> s = Shard.parse("1/3")
    >>> s.owns("entrance") == (owner("entrance", 3) == 1)
    True
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from streamcount.errors import UserError

log = logging.getLogger(__name__)

ENV_SHARD = "STREAMCOUNT_SHARD"
ENV_INDEX = "STREAMCOUNT_SHARD_INDEX"
ENV_COUNT = "STREAMCOUNT_SHARD_COUNT"
#: index sources tried in order when only the count is given
INDEX_FALLBACKS = (ENV_INDEX, "JOB_COMPLETION_INDEX")
#: the largest replica count accepted (a typo guard, not a limit of the method)
MAX_COUNT = 10000

_SPEC_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_ORDINAL_RE = re.compile(r"-(\d+)$")


class ShardError(UserError):
    """A malformed or out-of-range shard (``--shard`` or the environment)."""


def score(name: str, index: int) -> int:
    """The rendezvous weight of replica ``index`` for ``name`` (64-bit, stable everywhere)."""
    digest = hashlib.blake2b(f"{index}\x00{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(name: str, count: int) -> int:
    """The replica index (0..count-1) that owns ``name`` among ``count`` replicas."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    return max(range(count), key=lambda i: score(name, i))


@dataclass(frozen=True)
class Shard:
    """Replica ``index`` of ``count``; owns the names :func:`owner` assigns to ``index``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_COUNT:
            raise ShardError(f"shard count must be 1..{MAX_COUNT}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ShardError(f"shard index must be 0..{self.count - 1} for {self.count} "
                             f"replica(s), got {self.index}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str, *, source: str = "--shard") -> Shard:
        """``"INDEX/COUNT"`` (0-based index), e.g. ``"0/3"``.

        Raises:
            ShardError: malformed or out of range (the message names ``source``).
        """
        m = _SPEC_RE.match(text or "")
        if not m:
            raise ShardError(f"{source}: expected INDEX/COUNT such as 0/3, got {text!r}")
        try:
            return cls(int(m.group(1)), int(m.group(2)))
        except ShardError as e:
            raise ShardError(f"{source}: {e}") from None

    def owns(self, name: str) -> bool:
        """Whether this replica owns ``name``."""
        return owner(name, self.count) == self.index

    def select(self, names: Iterable[str]) -> list[str]:
        """The names this replica owns, in their original order."""
        return [n for n in names if self.owns(n)]


def assign(names: Iterable[str], count: int) -> dict[int, list[str]]:
    """Every replica index of ``count`` with the names it owns (in order)."""
    out: dict[int, list[str]] = {i: [] for i in range(count)}
    for n in names:
        out[owner(n, count)].append(n)
    return out


def _int_env(env: Mapping[str, str], key: str) -> int:
    text = env[key].strip()
    if not text.isdigit():
        raise ShardError(f"{key}: expected a non-negative integer, got {env[key]!r}")
    return int(text)


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard | None:
    """The shard the environment gives (see the module docstring), or None.

    Raises:
        ShardError: a variable is malformed, or the count is set but no index can be found.
    """
    env = os.environ if env is None else env
    if env.get(ENV_SHARD, "").strip():
        return Shard.parse(env[ENV_SHARD], source=ENV_SHARD)
    if not env.get(ENV_COUNT, "").strip():
        if env.get(ENV_INDEX, "").strip():
            raise ShardError(f"{ENV_INDEX} is set but {ENV_COUNT} is not")
        return None
    count = _int_env(env, ENV_COUNT)
    for key in INDEX_FALLBACKS:
        if env.get(key, "").strip():
            index, source = _int_env(env, key), key
            break
    else:
        m = _ORDINAL_RE.search(env.get("HOSTNAME", ""))
        if not m:
            raise ShardError(f"{ENV_COUNT} is set but no shard index: set {ENV_INDEX} (or run "
                             f"as a StatefulSet pod whose HOSTNAME ends in -ORDINAL)")
        index, source = int(m.group(1)), "HOSTNAME"
    try:
        return Shard(index, count)
    except ShardError as e:
        raise ShardError(f"{source}/{ENV_COUNT}: {e}") from None


def resolve_shard(cli: str | None, env: Mapping[str, str] | None = None) -> Shard | None:
    """``--shard`` if given, else the environment's shard, else None (own everything)."""
    shard = Shard.parse(cli) if cli is not None else shard_from_env(env)
    if shard is not None:
        log.info("shard %s", shard)
    return shard
