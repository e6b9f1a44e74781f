"""streamcount: real-time crowd counting with SKT-distilled density CNNs."""

__version__ = "0.1.0"
