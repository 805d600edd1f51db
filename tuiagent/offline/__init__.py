"""The built-in offline model: a real part of the product, honest that it is simulated."""

from tuiagent.offline.brain import OFFLINE_NOTICE
from tuiagent.offline.transport import OfflineModel

__all__ = ["OFFLINE_NOTICE", "OfflineModel"]
