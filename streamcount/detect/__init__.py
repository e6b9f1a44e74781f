"""Person detection for sparse scenes and the hybrid detect/density counting rule."""

from streamcount.detect.boxes import Detections, decode, nms

__all__ = ["Detections", "decode", "nms"]
