"""tuiagent: a chat agent that shows what every turn costs and never spends past its cap."""

__version__ = "0.1.0"
