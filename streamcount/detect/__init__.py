"""Person detection for sparse scenes and the hybrid detect/density counting rule."""

from streamcount.detect.boxes import Detections, decode, nms
from streamcount.detect.hybrid import HybridCount, HybridRule, count_map_for, hybrid_count

__all__ = ["Detections", "HybridCount", "HybridRule", "count_map_for", "decode", "hybrid_count",
           "nms"]
