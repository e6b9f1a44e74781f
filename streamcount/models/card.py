"""Model card: the metadata every streamcount weight file carries."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from streamcount.models.registry import arch_spec


@dataclass(frozen=True)
class Metric:
    """Accuracy measured on one evaluation split."""

    dataset: str  # e.g. "shanghaitech/part_B/test_data"
    mae: float
    rmse: float
    images: int
    max_side: int | None = None  # input size policy used for the measurement


@dataclass(frozen=True)
class ModelCard:
    """Architecture, preprocessing, provenance and measured accuracy of one weight file."""

    name: str
    arch: str
    colour: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_scale: float
    output_stride: int
    input_multiple: int
    training_data: str = "unknown"
    recipe: str = ""
    licence: str = "unknown"
    source: str = ""
    metrics: tuple[Metric, ...] = ()
    sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: "density" (a density map; count = sum) or "detect" (boxes; see ArchSpec.task)
    task: str = "density"

    @classmethod
    def for_arch(cls, arch: str, name: str, **kw: Any) -> ModelCard:
        """A card whose preprocessing fields come from the architecture registry."""
        s = arch_spec(arch)
        return cls(name=name, arch=arch, colour=s.colour, mean=tuple(s.mean), std=tuple(s.std),
                   input_scale=s.input_scale, output_stride=s.output_stride,
                   input_multiple=s.input_multiple, task=s.task, **kw)

    def with_(self, **kw: Any) -> ModelCard:
        """A copy with some fields replaced."""
        return replace(self, **kw)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        d = json.loads(text)
        d["mean"] = tuple(d["mean"])
        d["std"] = tuple(d["std"])
        d["metrics"] = tuple(Metric(**m) for m in d.get("metrics", ()))
        return cls(**d)
