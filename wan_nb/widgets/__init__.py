"""Widgets: thin views over jobs and the store (they never talk HTTP)."""

from .tracker import Tracker

__all__ = ["Tracker"]
