"""Model zoo: architectures, model cards, weight files."""

from streamcount.models.card import Metric, ModelCard
from streamcount.models.deploy import CountingNet
from streamcount.models.registry import ARCHITECTURES, arch_spec, build
from streamcount.models.weights import load_model, resolve_model, save_model

__all__ = ["ARCHITECTURES", "CountingNet", "Metric", "ModelCard", "arch_spec", "build",
           "load_model", "resolve_model", "save_model"]
