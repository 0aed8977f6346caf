"""`drip web --workers N`: every accepted connection has TCP_NODELAY, although uvicorn's
own listener for several processes leaves it off (web/server_protocol.py)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from uvicorn.config import Config
from uvicorn.server import ServerState

from web.server_protocol import IMPORT_PATH, NoDelayHTTPProtocol


async def _app(scope, receive, send):  # never called: the test only connects
    raise AssertionError("no request is made")


async def _accepted_nodelay(config: Config) -> int:
    listener = config.bind_socket()  # what the --workers supervisor hands each process
    made = []

    def factory():
        protocol = config.http_protocol_class(
            config=config, server_state=ServerState(), app_state={}
        )
        made.append(protocol)
        return protocol

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, sock=listener)
    try:
        _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        for _ in range(100):
            if made and made[0].transport is not None:
                break
            await asyncio.sleep(0.01)
        sock = made[0].transport.get_extra_info("socket")
        value = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        writer.close()
        return value
    finally:
        server.close()
        await server.wait_closed()


def test_the_protocol_drip_web_names_turns_nodelay_on_for_a_listener_uvicorn_bound():
    config = Config(app=_app, host="127.0.0.1", port=0, http=IMPORT_PATH, log_level="warning")
    config.load()
    assert config.http_protocol_class is NoDelayHTTPProtocol
    assert asyncio.run(_accepted_nodelay(config)) != 0


def test_drip_web_runs_uvicorn_with_that_protocol():
    # `drip web` replaces itself with uvicorn's command line (os.execv), so the name it
    # passes is read from its source; workers/ may not import web/ to share the constant.
    import workers.cli.processes as processes

    assert f'"--http",\n            "{IMPORT_PATH}"' in Path(processes.__file__).read_text()
