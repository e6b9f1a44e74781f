"""Targeted edits of a service config file that keep its comments and layout.

PyYAML cannot round-trip comments, so an edit is made on the text: the YAML is composed (not
loaded) to find the line of the key to change, and only that line is replaced, or one line is
inserted. Block-style camera entries (``- name: door`` followed by indented keys) are supported;
anything else is a one-line :class:`~streamcount.errors.ConfigError` asking for a manual edit.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from streamcount.errors import ConfigError


def _camera_node(root: yaml.Node, camera: str, path: Path) -> yaml.MappingNode:
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}: not a mapping at the top level")
    for k, v in root.value:
        if k.value == "cameras":
            if not isinstance(v, yaml.SequenceNode):
                raise ConfigError(f"{path}: 'cameras' is not a list", key="cameras")
            for i, cam in enumerate(v.value):
                if not isinstance(cam, yaml.MappingNode):
                    continue
                for ck, cv in cam.value:
                    if ck.value == "name" and cv.value == camera:
                        if cam.flow_style:
                            raise ConfigError(f"{path}: cameras[{i}] is a flow mapping "
                                              f"({{...}}); edit it by hand", key=f"cameras[{i}]")
                        return cam
    raise ConfigError(f"{path}: no camera named '{camera}' under 'cameras'", key="cameras")


def set_camera_value(path: str | Path, camera: str, key: str, value: object,
                     comment: str | None = None) -> None:
    """Set ``cameras[name=camera].key = value`` in the YAML file at ``path`` (atomically).

    ``value`` must be a scalar; ``comment`` is appended to the line as ``# comment``.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config ({e.strerror or e})") from None
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    cam = _camera_node(root, camera, p)
    lines = text.splitlines(keepends=True)
    rendered = yaml.safe_dump({key: value}, default_flow_style=True).strip()[1:-1].strip()
    suffix = f"  # {comment}" if comment else ""
    for k, v in cam.value:
        if k.value == key:
            if not isinstance(v, yaml.ScalarNode) or k.start_mark.line != v.end_mark.line:
                raise ConfigError(f"{p}: camera '{camera}' key '{key}' spans several lines; "
                                  f"edit it by hand", key=key)
            line = lines[k.start_mark.line]
            eol = "\n" if line.endswith("\n") else ""
            lines[k.start_mark.line] = line[:k.start_mark.column] + rendered + suffix + eol
            break
    else:
        name_key = next(k for k, _ in cam.value if k.value == "name")
        at = name_key.start_mark.line + 1  # right after the camera's name line
        if not lines[at - 1].endswith("\n"):
            lines[at - 1] += "\n"
        lines.insert(at, f"{' ' * name_key.start_mark.column}{rendered}{suffix}\n")
    new = "".join(lines)
    try:
        yaml.safe_load(new)
    except yaml.YAMLError as e:  # pragma: no cover - a bug in the edit, never the user's file
        raise ConfigError(f"{p}: edit would break the file ({e}); nothing written") from None
    write_text_atomic(p, new)


def format_polygon(polygon: list[tuple[float, float]] | list[list[float]]) -> str:
    """A polygon as one YAML flow sequence: ``[[0.1, 0.2], [0.5, 0.2], ...]`` (4 decimals for
    relative coordinates, 1 for pixels)."""
    nd = 4 if all(abs(v) <= 1.5 for p in polygon for v in p) else 1
    return "[" + ", ".join(f"[{round(float(x), nd):g}, {round(float(y), nd):g}]"
                           for x, y in polygon) + "]"


def upsert_region_text(text: str, camera: str, name: str,
                       polygon: list[tuple[float, float]], path: Path | None = None) -> str:
    """``text`` (a service config) with region ``name`` of ``camera`` given ``polygon``:
    only the polygon of an existing region is replaced (its other keys and every comment
    stay); a new region is appended to the camera's ``regions`` (created if absent).

    ``polygon`` is relative; a region with ``reference_size`` gets it converted to pixels.
    """
    p = path or Path("config")
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    cam = _camera_node(root, camera, p)
    regions = next((v for k, v in cam.value if k.value == "regions"), None)
    if regions is not None and not isinstance(regions, yaml.SequenceNode):
        raise ConfigError(f"{p}: camera '{camera}' regions is not a list", key="regions")
    for item in regions.value if regions is not None else []:
        if not isinstance(item, yaml.MappingNode):
            continue
        keys = {k.value: v for k, v in item.value}
        if getattr(keys.get("name"), "value", None) != name:
            continue
        ref = keys.get("reference_size")
        pts = list(polygon)
        if isinstance(ref, yaml.SequenceNode) and len(ref.value) == 2:
            rw, rh = (float(v.value) for v in ref.value)
            pts = [(x * rw, y * rh) for x, y in pts]
        node = keys.get("polygon")
        if node is None:
            raise ConfigError(f"{p}: region '{name}' has no polygon", key="polygon")
        return text[:node.start_mark.index] + format_polygon(pts) + text[node.end_mark.index:]
    entry = f"name: {name}, polygon: {format_polygon(list(polygon))}"
    lines = text.splitlines(keepends=True)
    if regions is None:  # a new regions list after the camera's name line
        name_key = next(k for k, _ in cam.value if k.value == "name")
        col, at = name_key.start_mark.column, name_key.start_mark.line + 1
        if not lines[at - 1].endswith("\n"):
            lines[at - 1] += "\n"
        lines.insert(at, f"{' ' * col}regions:\n{' ' * col}  - {{{entry}}}\n")
        return "".join(lines)
    if regions.flow_style:  # [...]: add one more flow mapping before the closing bracket
        end = regions.end_mark.index - 1
        sep = ", " if regions.value else ""
        return text[:end] + f"{sep}{{{entry}}}" + text[end:]
    first = regions.value[0]
    line = lines[first.start_mark.line]
    dash = line.rfind("-", 0, first.start_mark.column)
    col = dash if dash >= 0 else first.start_mark.column
    last_end = regions.value[-1].end_mark
    # a block node ends where the next token starts: the item ends before that line when
    # only indentation precedes the mark there
    head = lines[last_end.line][:last_end.column] if last_end.line < len(lines) else ""
    at = last_end.line if not head.strip() else last_end.line + 1
    while at > 0 and at <= len(lines) and not lines[at - 1].strip():
        at -= 1  # after the last item, before blank lines
    if at > 0 and not lines[at - 1].endswith("\n"):
        lines[at - 1] += "\n"
    lines.insert(at, f"{' ' * col}- {{{entry}}}\n")
    return "".join(lines)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace the file at ``path`` by ``text`` atomically, keeping its permissions."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, p.stat().st_mode & 0o777)
        os.replace(tmp, p)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"{p}: cannot write config ({e.strerror or e})") from None
