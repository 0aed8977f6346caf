"""uvicorn's HTTP protocol with TCP_NODELAY set on every connection it accepts.

`uvicorn --workers N` binds the listening socket itself and leaves its protocol number at
0. Accepted sockets inherit that, and asyncio turns TCP_NODELAY on only for sockets that
report IPPROTO_TCP (Kludex/uvicorn#3149). So with more than one process Nagle's algorithm
stays on, and every keep-alive request after the first waits for the client's delayed ACK,
about 40 ms on Linux. Measured here: a bare GIF at 50 connections gave 6,100 req/s with
one process and 1,140 with two. `drip web` names this class to uvicorn (`--http`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol

IMPORT_PATH = "web.server_protocol:NoDelayHTTPProtocol"


def nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # the peer may already be gone
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    def connection_made(self, transport) -> None:  # type: ignore[override]
        nodelay(transport)
        super().connection_made(transport)
