"""deploy/docker: what the images promise (base as a build argument, non-root, /healthz
healthcheck, config and state volumes, SIGTERM) and that every COPY source is in the build
context that .dockerignore leaves. Building is deploy/build-and-count.sh's job (not in CI)."""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"


def in_context(path: str) -> bool:
    """Whether .dockerignore (last matching pattern wins, ``!`` re-includes) keeps ``path``."""
    keep = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = line[1:] if neg else line
        pat = pat.rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.replace("**/", "*/"))
               for p in prefixes) or pat == "**":
            keep = neg
    return keep


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_dockerfile(name: str) -> None:
    text = (DOCKER / name).read_text()
    lines = [x.strip() for x in text.replace("\\\n", " ").splitlines()
             if x.strip() and not x.lstrip().startswith("#")]
    assert lines[0].startswith("ARG BASE=") and "FROM ${BASE}" in text
    users = [x.split()[1] for x in lines if x.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(x.startswith("HEALTHCHECK") and "HEALTH_URL" in x for x in lines)
    assert "HEALTH_URL=http://127.0.0.1:8080/healthz" in text
    assert 'VOLUME ["/config", "/var/lib/streamcount"]' in lines
    assert "STOPSIGNAL SIGTERM" in lines and "STREAMCOUNT_HOME=/var/lib/streamcount" in text
    assert "models info default" in text  # the baked-in default model is checked at build
    for line in lines:
        if line.startswith("COPY") and "--from=" not in line:
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), src
                assert in_context(src), f"{src} is excluded by .dockerignore"
    if name.endswith("gpu"):
        assert '"/src[tensorrt,train]"' in text
    else:
        assert "TORCH_PIP_ARGS" in text and "download.pytorch.org/whl/cpu" in text


def test_context_excludes_the_rest() -> None:
    for path in ("runs/x", ".venv/bin/python", "training/checkpoints/a/best_1.pt", ".git/HEAD",
                 "streamcount/__pycache__/x.pyc"):
        assert not in_context(path), path
    assert in_context("streamcount/models/weights/default.safetensors")


def test_build_script_parses() -> None:
    script = ROOT / "deploy" / "build-and-count.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for needle in ("mmdebstrap", "podman import", "--isolation chroot", "podman image mount",
                   "chroot --userspec"):
        assert needle in text, needle
    assert re.search(r"streamcount count /mnt/vtest\.avi", text)
