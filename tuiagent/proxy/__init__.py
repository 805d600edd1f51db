"""Proxy mode: an Anthropic-compatible HTTP proxy that meters and hard-caps any client.

`tuiagent proxy` listens on 127.0.0.1; a client pointed at it with ANTHROPIC_BASE_URL has
each Messages call reserved at its worst case in one `Budget` before it leaves the machine
(`meter`), forwarded with its own key and streamed back byte for byte while the stream is
read for usage (`server`, `sse`), and written to the run log with `"source": "proxy"`.
This package never imports Textual: the dashboard (`tuiagent.ui.proxy`) imports it.
"""

DEFAULT_UPSTREAM = "https://api.anthropic.com"
