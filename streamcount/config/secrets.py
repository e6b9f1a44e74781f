"""``${ENV}`` and secret substitution in config values.

Forms (inside any string value of the YAML):

- ``${NAME}``: the environment variable ``NAME``; an error when it is not set.
- ``${NAME:-default}``: ``NAME`` or ``default`` when it is unset or empty.
- ``${secret:NAME}``: the contents of the file ``NAME`` in the secrets directory
  (``/run/secrets``, Docker/Kubernetes secrets; ``$STREAMCOUNT_SECRETS_DIR`` overrides it),
  with trailing newlines removed.
- ``$$`` is a literal ``$``.
- A whole value ``/run/secrets/NAME`` is replaced by that secret's contents, except in keys
  that hold file paths (:data:`PATH_KEYS`), where it stays a path (re-rooted in
  ``$STREAMCOUNT_SECRETS_DIR`` when that is set).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

DEFAULT_SECRETS_DIR = "/run/secrets"
#: keys whose values are file paths: ``/run/secrets/NAME`` stays a path there
PATH_KEYS = frozenset({"ca_file", "certfile", "keyfile", "source", "jsonl", "csv_dir",
                       "spool_dir", "model"})

_REF_RE = re.compile(r"\$(?:\$|\{(?P<body>[^}]*)\})")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class SubstitutionError(ValueError):
    """A reference that cannot be resolved (message names the variable or secret)."""


def secrets_dir(env: Mapping[str, str] | None = None) -> Path:
    """The secrets directory: ``$STREAMCOUNT_SECRETS_DIR`` or ``/run/secrets``."""
    env = os.environ if env is None else env
    return Path(env.get("STREAMCOUNT_SECRETS_DIR") or DEFAULT_SECRETS_DIR)


def read_secret(name: str, env: Mapping[str, str] | None = None) -> str:
    """The contents of secret ``name`` (trailing newlines stripped)."""
    if not _SECRET_NAME_RE.match(name) or name in (".", ".."):
        raise SubstitutionError(f"invalid secret name '{name}'")
    path = secrets_dir(env) / name
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        raise SubstitutionError(f"secret '{name}' not found ({path})") from None
    except OSError as e:
        raise SubstitutionError(f"secret '{name}' unreadable ({path}): {e.strerror}") from None


def substitute(value: str, key: str | None = None,
               env: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """Resolve the references in ``value`` (found under ``key``).

    Returns:
        (the new value, whether anything was substituted).

    Raises:
        SubstitutionError: a missing variable or secret, or a malformed reference.
    """
    env = os.environ if env is None else env
    prefix = DEFAULT_SECRETS_DIR + "/"
    if value.startswith(prefix) and "/" not in value[len(prefix):] and len(value) > len(prefix):
        name = value[len(prefix):]
        if key in PATH_KEYS:
            return str(secrets_dir(env) / name), secrets_dir(env) != Path(DEFAULT_SECRETS_DIR)
        return read_secret(name, env), True
    if "$" not in value:
        return value, False

    def one(m: re.Match[str]) -> str:
        body = m.group("body")
        if body is None:
            return "$"
        if body.startswith("secret:"):
            return read_secret(body[len("secret:"):], env)
        name, sep, default = body.partition(":-")
        if not _NAME_RE.match(name):
            raise SubstitutionError(f"malformed reference '${{{body}}}'")
        got = env.get(name)
        if sep:
            return got if got else default
        if got is None:
            raise SubstitutionError(f"environment variable {name} is not set")
        return got

    return _REF_RE.sub(one, value), True
