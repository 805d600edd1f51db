"""The one meter of model calls, shared by the agent (agent/call.py) and the proxy
(proxy/meter.py): plan, hold, settle, with the same distrust rules for both (see `core`)."""

from tuiagent.meter.core import (
    WAIT_POLL_S,
    CallMeter,
    Counter,
    Held,
    Plan,
    Prefixes,
    Seen,
    Settled,
    Size,
    Unfit,
    Waiting,
    record_fields,
    uncounted,
)

__all__ = [
    "WAIT_POLL_S",
    "CallMeter",
    "Counter",
    "Held",
    "Plan",
    "Prefixes",
    "Seen",
    "Settled",
    "Size",
    "Unfit",
    "Waiting",
    "record_fields",
    "uncounted",
]
