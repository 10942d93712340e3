"""wan_nb: Alibaba Cloud Wan text-to-video (DashScope) in Jupyter, with an offline emulator."""
from ._version import __version__
from .errors import *  # noqa: F401,F403
from .request import GenerationRequest
