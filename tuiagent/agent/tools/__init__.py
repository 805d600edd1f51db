"""Tools the agent can call, confined to the workspace."""

from tuiagent.agent.tools.base import Tool, ToolError, ToolOutput
from tuiagent.agent.tools.toolbox import Toolbox
from tuiagent.agent.tools.workspace import Workspace

__all__ = ["Tool", "ToolError", "ToolOutput", "Toolbox", "Workspace"]
