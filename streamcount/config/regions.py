"""Region of interest specification, shared by `streamcount count --regions` and the service
config (a camera's ``regions:``). Geometry (validation, masks) lives in
:mod:`streamcount.regions`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RegionSpec(BaseModel):
    """A named polygon, relative (0-1) coordinates unless ``reference_size`` gives pixels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    polygon: list[tuple[float, float]]
    reference_size: tuple[int, int] | None = None  # (width, height) of pixel coordinates


class RegionsFile(BaseModel):
    """The top level of a regions file (YAML or JSON)."""

    model_config = ConfigDict(extra="forbid")

    regions: list[RegionSpec] = Field(default_factory=list)
