"""The built-in offline model: a real part of the product, honest that it is simulated."""

from tuiagent.llm.offline.brain import OFFLINE_NOTICE
from tuiagent.llm.offline.transport import OfflineModel

__all__ = ["OFFLINE_NOTICE", "OfflineModel"]
