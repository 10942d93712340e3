"""Widgets: thin views over jobs and the store (they never talk HTTP).

:class:`Studio` puts them together; each also works alone: :class:`GenerationForm`,
:class:`Tracker`, :class:`Player`, :class:`Gallery`, :class:`History`.
"""

from .form import GenerationForm
from .gallery import Gallery
from .history import History
from .player import Player
from .studio import Studio
from .tracker import Tracker

__all__ = ["Gallery", "GenerationForm", "History", "Player", "Studio", "Tracker"]
