"""A loopback TCP proxy that can cut the line: every open connection is dropped and new
ones are refused for a while, as when a database server restarts or the network between
the workers and it fails. Used by bench/faults.py for PostgreSQL connection cuts.

    with FaultProxy("127.0.0.1", 5432) as proxy:     # listens on 127.0.0.1:<proxy.port>
        url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/mydb"
        ...
        proxy.cut(10)        # returns at once; the line is back 10 s later
        proxy.wait_restored()

Refused, not silently black-holed: while cut, nothing listens on the port, so a client
gets "connection refused" at once (a restarting server), and open connections are reset
(aborted) rather than closed politely, so their next read fails instead of hanging.

By hand, forwarding a port and cutting on SIGUSR1:

    .venv/bin/python -m tests.faultproxy --listen 6543 --target 127.0.0.1:5432 --cut-seconds 10
    kill -USR1 <pid>
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import threading
import time
from typing import Self

CHUNK = 65536


class FaultProxy:
    """Forwards 127.0.0.1:`listen_port` (0: any free port) to `target_host:target_port`,
    on its own event loop in a daemon thread."""

    def __init__(
        self, target_host: str, target_port: int, listen_host: str = "127.0.0.1", listen_port=0
    ):
        self.target = (target_host, int(target_port))
        self.host, self.port = listen_host, int(listen_port)
        self.connections = 0  # accepted since start, for reports
        self.cuts: list[tuple[float, float]] = []  # (start, end) wall times
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._transports: set[asyncio.Transport] = set()
        self._restored = threading.Event()
        self._restored.set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="proxy")

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> Self:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # faults ----------------------------------------------------------------------------
    def cut(self, seconds: float) -> None:
        """Drop every connection and refuse new ones for `seconds`; returns at once."""
        self._restored.clear()
        self._call(self._shut())
        started = time.time()

        def reopen() -> None:
            self._loop.create_task(self._reopen(started))

        self._loop.call_soon_threadsafe(self._loop.call_later, seconds, reopen)

    def wait_restored(self, timeout: float | None = None) -> bool:
        return self._restored.wait(timeout)

    @property
    def is_cut(self) -> bool:
        return not self._restored.is_set()

    # internals -------------------------------------------------------------------------
    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        # reuse_address (the asyncio default on Unix) lets the port be bound again at
        # once after a cut, with the old connections in TIME_WAIT.
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _reopen(self, started: float) -> None:
        await self._listen()
        self.cuts.append((started, time.time()))
        self._restored.set()

    async def _shut(self) -> None:
        if self._server is not None:
            self._server.close()  # stop listening: new connections are refused
            self._server = None
        for transport in list(self._transports):
            transport.abort()  # a reset, not a polite close
        self._transports.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer.transport, up_writer.transport)
        self._transports.update(pair)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for transport in pair:
                self._transports.discard(transport)
                transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        if not writer.transport.is_closing():
            writer.write_eof()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=int, default=0, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--target", default="127.0.0.1:5432", help="host:port to forward to")
    parser.add_argument("--cut-seconds", type=float, default=10.0, help="length of a cut")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    proxy = FaultProxy(host, int(port), listen_port=args.listen).start()
    signal.signal(signal.SIGUSR1, lambda *_: proxy.cut(args.cut_seconds))
    print(f"forwarding 127.0.0.1:{proxy.port} -> {args.target}; SIGUSR1 cuts it", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            signal.pause()
    proxy.stop()


if __name__ == "__main__":
    main()
