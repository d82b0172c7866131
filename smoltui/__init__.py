"""smoltui: a keyboard-driven terminal workbench for small language models."""

__version__ = "0.1.0"
