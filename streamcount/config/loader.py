"""Load the service config: YAML with line numbers, ``${ENV}``/secret substitution, pydantic
validation, and every problem mapped to a key path and a YAML line.

``validate_config`` reports all problems; ``load_config`` raises the first one as a
:class:`~streamcount.errors.ConfigError` (``path:line: key.path: message``).
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from streamcount.config import schema
from streamcount.config.redact import redact
from streamcount.config.regions import RegionSpec
from streamcount.config.schema import (FIELD_ERROR, ServiceConfig, duplicates,
                                       polygon_problem)
from streamcount.config.secrets import SubstitutionError, substitute
from streamcount.errors import ConfigError

log = logging.getLogger(__name__)

Loc = tuple[str | int, ...]
_STR_TAG = "tag:yaml.org,2002:str"
_PATH_PART_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
# ${...} and $$ references; replaced by plain tokens before parsing so that they are valid
# YAML anywhere (``{user: ${MQTT_USER}}`` is a flow mapping otherwise)
_REF_RE = re.compile(r"\$(?:\$|\{[^}\n]*\})")


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file: where (key path, 1-based line) and what."""

    key_path: str
    line: int | None
    message: str

    def format(self, path: str | os.PathLike[str]) -> str:
        """``path:line: key.path: message`` (parts omitted when unknown)."""
        where = f"{path}:{self.line}" if self.line is not None else f"{path}"
        key = f" {self.key_path}:" if self.key_path else ""
        return f"{where}:{key} {self.message}"


def format_key_path(loc: Loc) -> str:
    """``("cameras", 0, "regions", 1, "polygon")`` -> ``cameras[0].regions[1].polygon``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_key_path(text: str) -> Loc:
    """Inverse of :func:`format_key_path`."""
    return tuple(int(m.group(2)) if m.group(2) is not None else m.group(1)
                 for m in _PATH_PART_RE.finditer(text))


class _Reader:
    """Turns a composed YAML node tree into plain data, recording each key's line and the
    substitution problems."""

    def __init__(self, loader: yaml.SafeLoader, env: Mapping[str, str],
                 refs: Mapping[str, str], token_re: re.Pattern[str]) -> None:
        self.loader = loader
        self.env = env
        self.refs = refs
        self.token_re = token_re
        self.lines: dict[Loc, int] = {}
        self.issues: list[ConfigIssue] = []
        self.bad: set[Loc] = set()

    def issue(self, loc: Loc, line: int | None, message: str) -> None:
        self.issues.append(ConfigIssue(format_key_path(loc), line, message))
        self.bad.add(loc)

    def read(self, node: yaml.Node, loc: Loc) -> Any:
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # YAML merge keys (<<)
            out: dict[str, Any] = {}
            for knode, vnode in node.value:
                key = self.loader.construct_object(knode, deep=True)
                if isinstance(key, str):
                    key = self.restore(key)
                line = knode.start_mark.line + 1
                if not isinstance(key, (str, int, float, bool)) or isinstance(key, bool):
                    self.issue(loc, line, f"invalid key {key!r}")
                    continue
                key = str(key)
                if key in out:
                    self.issue(loc + (key,), line, f"duplicate key '{key}'")
                    continue
                self.lines[loc + (key,)] = line
                out[key] = self.read(vnode, loc + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.lines[loc + (i,)] = item.start_mark.line + 1
                items.append(self.read(item, loc + (i,)))
            return items
        if node.tag == _STR_TAG and isinstance(node.value, str):
            key = next((p for p in reversed(loc) if isinstance(p, str)), None)
            try:
                value, _changed = substitute(self.restore(node.value), key, self.env)
            except SubstitutionError as e:
                self.issue(loc, node.start_mark.line + 1, str(e))
                return None
            return value
        return self.loader.construct_object(node, deep=True)

    def restore(self, text: str) -> str:
        """``text`` with the reference tokens put back."""
        if not self.refs:
            return text
        return self.token_re.sub(lambda m: self.refs[m.group(0)], text)


def _tokenize(text: str) -> tuple[str, dict[str, str], re.Pattern[str]]:
    """Replace each ``${...}``/``$$`` by a unique plain token; returns the new text, the
    token -> reference map and the token pattern."""
    nonce = secrets.token_hex(4)
    refs: dict[str, str] = {}

    def one(m: re.Match[str]) -> str:
        token = f"__scref{nonce}x{len(refs)}__"
        refs[token] = m.group(0)
        return token

    return _REF_RE.sub(one, text), refs, re.compile(rf"__scref{nonce}x\d+__")


def _raw_issues(data: Mapping[str, Any], lines: Mapping[Loc, int]) -> list[ConfigIssue]:
    """Checks across list items that pydantic skips when a sibling field is invalid:
    duplicate camera and region names, region geometry."""
    out: list[ConfigIssue] = []

    def add(loc: Loc, msg: str) -> None:
        out.append(ConfigIssue(format_key_path(loc), _line(lines, loc), msg))

    cams = data.get("cameras")
    if not isinstance(cams, list):
        return out
    names = [c.get("name") for c in cams if isinstance(c, dict)]
    if len(names) == len(cams):
        for i, msg in duplicates(names, "camera name"):
            add(("cameras", i, "name"), msg)
    for ci, cam in enumerate(cams):
        regions = cam.get("regions") if isinstance(cam, dict) else None
        if not isinstance(regions, list) or not all(isinstance(r, dict) for r in regions):
            continue
        for i, msg in duplicates([r.get("name") for r in regions], "region name"):
            add(("cameras", ci, "regions", i, "name"), msg)
        for ri, reg in enumerate(regions):
            try:
                spec = RegionSpec.model_validate(
                    {k: reg[k] for k in ("name", "polygon", "reference_size") if k in reg})
            except ValidationError:
                continue  # reported by the full validation
            problem = polygon_problem(spec)
            if problem:
                add(("cameras", ci, "regions", ri, problem[0]), problem[1])
    return out


def _line(lines: Mapping[Loc, int], loc: Loc) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _all_field_names() -> list[str]:
    names: set[str] = set()
    for obj in vars(schema).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            names.update(obj.model_fields)
    return sorted(names)


def _message(err: Mapping[str, Any], loc: Loc) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = loc[-1] if loc else "?"
        close = difflib.get_close_matches(str(key), _all_field_names(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown key '{key}'{hint}"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return redact(msg)


def _validation_issues(exc: ValidationError, lines: Mapping[Loc, int],
                       bad: set[Loc]) -> list[ConfigIssue]:
    out = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        if err["type"] == FIELD_ERROR:
            loc = loc + parse_key_path(str(err["ctx"]["field"]))
        if any(loc[:len(b)] == b for b in bad):
            continue  # already reported as a substitution problem
        out.append(ConfigIssue(format_key_path(loc), _line(lines, loc), _message(err, loc)))
    return out


def _read_file(path: Path, env: Mapping[str, str]) -> tuple[Any, _Reader | None,
                                                              list[ConfigIssue]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None, [ConfigIssue("", None, "config file not found")]
    except (OSError, UnicodeDecodeError) as e:
        return None, None, [ConfigIssue("", None, f"cannot read config: {e}")]
    text, refs, token_re = _tokenize(text)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None, [ConfigIssue("", 1, "the config is empty")]
        reader = _Reader(loader, env, refs, token_re)
        reader.lines[()] = node.start_mark.line + 1
        data = reader.read(node, ())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        return None, None, [ConfigIssue("", line, f"YAML syntax error: {e.problem}")]
    except yaml.YAMLError as e:
        return None, None, [ConfigIssue("", None, f"YAML error: {e}")]
    finally:
        loader.dispose()
    return data, reader, list(reader.issues)


def check_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None
                 ) -> tuple[ServiceConfig | None, list[ConfigIssue]]:
    """``(config, [])`` when the file is valid, else ``(None, every problem by line)``."""
    p = Path(path)
    data, reader, issues = _read_file(p, os.environ if env is None else env)
    if reader is None:
        return None, issues
    if not isinstance(data, dict):
        return None, [ConfigIssue("", 1, "the config must be a mapping of sections "
                                         "(cameras:, mqtt:, ...)")]
    try:
        cfg = ServiceConfig.model_validate(data, context={"base_dir": p.resolve().parent})
    except ValidationError as e:
        issues += _validation_issues(e, reader.lines, reader.bad)
        issues += _raw_issues(data, reader.lines)
        cfg = None
    if issues:
        unique = list(dict.fromkeys(issues))
        unique.sort(key=lambda i: (i.line is None, i.line or 0))
        return None, unique
    return cfg, []


def validate_config(path: str | os.PathLike[str],
                    env: Mapping[str, str] | None = None) -> list[ConfigIssue]:
    """Every problem in the config file at ``path`` (empty when it is valid), by line."""
    return check_config(path, env)[1]


def load_config(path: str | os.PathLike[str],
                env: Mapping[str, str] | None = None) -> ServiceConfig:
    """Load and validate the service config at ``path``.

    Args:
        path: the YAML file; relative paths inside resolve against its directory.
        env: the environment for ``${VAR}`` (default ``os.environ``).

    Raises:
        ConfigError: the first problem, as ``path:line: key.path: message``.
    """
    cfg, issues = check_config(path, env)
    if cfg is None:
        first = issues[0]
        raise ConfigError(first.message, path=str(path), key=first.key_path or None,
                          line=first.line)
    return cfg
