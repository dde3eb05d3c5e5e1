"""Outputs floor: images and reports for people (unit strips, HTML/CSV/JSON of a dissection).
Imports base and engine."""
from core.outputs import report, visualize  # noqa: F401

__all__ = ["report", "visualize"]
