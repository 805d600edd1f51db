"""Who may use the proxy: the clients on this machine, not a web page.

A web page can reach a server on 127.0.0.1 two ways: by sending its requests there (the
browser adds an `Origin`), or by DNS rebinding (its own name made to resolve to 127.0.0.1:
the browser then sends `Host: evil.example`). SDKs and command-line clients send neither
an `Origin` nor a foreign `Host`. So a request is refused when its `Host` is not the
proxy's own address or `localhost` (or a name the config adds), and when it carries any
`Origin` the config does not list.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _host_and_port(value: str) -> tuple[str, int | None] | None:
    """`name`, `name:port`, `[v6]`, `[v6]:port`, lower-cased; None if it is none of these."""
    value = value.strip().lower()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else None
    else:
        host, sep, port_text = value.partition(":")
        port = port_text if sep else None
    if not host or (port is not None and not (port.isdigit() and len(port) <= 5)):
        return None
    return host, int(port) if port is not None else None


def _address(name: str) -> str:
    """An IP address in one spelling (`0:0::1` is `::1`); a name as it is."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


@dataclass(frozen=True)
class Door:
    hosts: frozenset[str] = LOCAL_NAMES  # names and addresses a `Host` may give
    port: int | None = None  # the port a `Host` may give (None: any)
    origins: frozenset[str] = frozenset()  # the web pages allowed in, by exact origin

    @classmethod
    def of(
        cls,
        bound_host: str,
        port: int | None,
        allowed_hosts: tuple[str, ...] = (),
        allowed_origins: tuple[str, ...] = (),
    ) -> Door:
        names = {_address(h.lower().strip("[]")) for h in (bound_host, *allowed_hosts)}
        origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        return cls(frozenset(LOCAL_NAMES | names), port, origins)

    def refusal(self, host: bytes | None, origin: bytes | None) -> str | None:
        """Why a request with these headers is not served, or None."""
        if origin is not None:
            shown = origin.decode("latin-1")
            if shown.rstrip("/").lower() not in self.origins:
                return (
                    f"a request from a web page (Origin: {shown!r}) is not served; "
                    "list the origin in the config's proxy_allowed_origins to allow it"
                )
        if host is None:
            return "a request without a Host header is not served"
        parsed = _host_and_port(host.decode("latin-1"))
        if (
            parsed is None
            or _address(parsed[0]) not in self.hosts
            or (parsed[1] is not None and self.port is not None and parsed[1] != self.port)
        ):
            return (
                f"Host {host.decode('latin-1')!r} is not this proxy's address; a name another "
                "site points here (DNS rebinding) is not served: list it in the config's "
                "proxy_allowed_hosts to allow it"
            )
        return None

    def allows_origin(self, origin: bytes | None) -> bool:
        return origin is not None and origin.decode("latin-1").rstrip("/").lower() in self.origins
