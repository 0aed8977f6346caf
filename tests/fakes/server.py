"""Scriptable loopback HTTP server that the real provider SDKs can talk to.

Why: mocking ``twilio``/``sendgrid`` objects only proves that we call a mock.
Pointing the *real* SDKs at a local server exercises their URL building, auth,
serialisation and error mapping, while staying hermetic and fast (stdlib only,
127.0.0.1 on an ephemeral port, starts in milliseconds).

Usage::

    with FakeServer() as fake:            # or fake.start() / fake.stop()
        fake.enqueue(Response(500, {"oops": 1}))      # next answer
        fake.enqueue(Response(delay=2.0))             # default answer, but slow
        fake.enqueue(Response(drop_connection=True))  # close socket, no answer
        fake.always(Response(503))                    # every answer until reset()
        fake.sometimes(0.2, Response(500), Response(delay=12))  # a fifth, at random
        ...  # point an SDK at fake.url
        fake.wait_for(1)                              # -> list[Recorded]

Scripted responses take precedence over the subclass's ``route()`` (so they
also bypass auth checks); the queue comes first, then ``always``, then
``sometimes`` (a fraction of requests, drawn at random, answered by the given
responses in turn: a flaky provider, for fault runs); ``Response(status=None)`` means "whatever
``route()`` would answer", which lets you delay or drop a realistic answer.
Each connection is served on its own thread, so a delayed answer never
blocks other requests; ``stop()`` wakes sleeping handlers at once.

If the environment defines HTTP(S)_PROXY, make sure NO_PROXY covers
127.0.0.1, or both ``requests`` and ``urllib`` will send loopback traffic to
the proxy.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import random
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


class CIDict(MutableMapping):
    """Case-insensitive header mapping (HTTP header names are case-insensitive)."""

    def __init__(self, items: Any = ()) -> None:
        self._d: dict[str, tuple[str, str]] = {}
        self.update(items)

    def __getitem__(self, key: str) -> str:
        return self._d[key.lower()][1]

    def __setitem__(self, key: str, value: str) -> None:
        self._d[key.lower()] = (key, value)

    def __delitem__(self, key: str) -> None:
        del self._d[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._d.values())

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"CIDict({dict(self.items())!r})"


def parse_pairs(qs: str) -> dict[str, str | list[str]]:
    """Parse a query string / form body; repeated fields become lists."""
    parsed = parse_qs(qs, keep_blank_values=True)
    return {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}


@dataclass
class Response:
    """A programmed answer. ``status=None`` means "the fake's normal answer".

    ``body``: dict/list -> JSON, str -> text, bytes -> raw, None -> empty.
    ``delay``: seconds to sleep before answering (slow provider / timeouts).
    ``drop_connection``: read the request, then close the socket unanswered.
    """

    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop_connection: bool = False


@dataclass
class Recorded:
    """One request as the server saw it (recorded on arrival, before any delay)."""

    received: float  # time.monotonic()
    wall_time: float  # time.time()
    method: str
    path: str
    query: dict[str, str | list[str]]
    headers: CIDict
    body: bytes
    json: Any = None
    form: dict[str, str | list[str]] | None = None
    response: Response | None = None  # what was answered (None until decided)

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """(username, password) from an ``Authorization: Basic`` header."""
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None
        return user, password

    @property
    def bearer_token(self) -> str | None:
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: a burst of concurrent connects beyond it has
    # its SYNs dropped and retried a second later. Real APIs accept far more.
    request_queue_size = 128
    fake: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-answer is expected (timeouts, drops)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    # Keep-alive, as the real APIs do: every answer carries Content-Length. Headers and
    # body are separate writes, so Nagle's algorithm would stall each answer on a delayed ACK.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "FakeProvider/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class FakeServer:
    """Base fake: records requests, answers scripted responses or ``route()``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._requests: list[Recorded] = []
        self._queue: deque[Response] = deque()
        self._always: Response | None = None
        self._sometimes: tuple[float, random.Random, Iterator] | None = None
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []  # tracebacks of bugs inside the fake itself

    # lifecycle -----------------------------------------------------------
    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wake handlers sleeping in a delay
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("fake server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # scripting -----------------------------------------------------------
    def enqueue(self, *responses: Response) -> None:
        """Answer the next requests with these, in order (then the default)."""
        with self._cond:
            self._queue.extend(responses)

    def always(self, response: Response) -> None:
        """Answer every request (after the queue drains) with this until reset()."""
        with self._cond:
            self._always = response

    def sometimes(
        self,
        fraction: float,
        *responses: Response | Callable[[], Response],
        seed: int | None = None,
    ) -> None:
        """Answer about `fraction` of the requests (each drawn at random; reproducible
        with `seed`) with these responses in turn, the others normally, until
        ``sometimes(0)`` or ``reset()``. A callable is called per answer, for headers
        that depend on the time (a rate limit's reset)."""
        with self._cond:
            if fraction <= 0 or not responses:
                self._sometimes = None
            else:
                self._sometimes = (fraction, random.Random(seed), itertools.cycle(responses))

    def reset(self) -> None:
        """Forget scripts, recorded requests and any provider-side state."""
        with self._cond:
            self._queue.clear()
            self._always = None
            self._sometimes = None
            self._requests.clear()
            self.errors.clear()
            self._reset_state()

    def _reset_state(self) -> None:
        """Subclass hook: clear stored resources."""

    # inspection ----------------------------------------------------------
    @property
    def requests(self) -> list[Recorded]:
        with self._cond:
            return list(self._requests)

    def wait_for(self, n: int, timeout: float = 2.0) -> list[Recorded]:
        """Block until at least ``n`` requests arrived; return them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= n, timeout):
                raise AssertionError(
                    f"expected {n} requests within {timeout}s, got {len(self._requests)}"
                )
            return list(self._requests)

    # routing -------------------------------------------------------------
    def route(self, req: Recorded) -> Response:
        """Default answer for unscripted requests; subclasses emulate the API."""
        return Response(200, {})

    # internals -----------------------------------------------------------
    def _handle(self, h: _Handler) -> None:
        req = self._record(h)
        with self._cond:
            scripted = self._queue.popleft() if self._queue else self._always
            if scripted is None and self._sometimes is not None:
                fraction, draw, answers = self._sometimes
                if draw.random() < fraction:
                    scripted = next(answers)
        try:
            if callable(scripted):
                scripted = scripted()
            if scripted is None:
                resp = self.route(req)
            elif scripted.status is None:
                routed = self.route(req)
                resp = replace(
                    routed, delay=scripted.delay, drop_connection=scripted.drop_connection
                )
            else:
                resp = scripted
        except Exception:  # a bug in the fake must not hang the client
            with self._cond:
                self.errors.append(traceback.format_exc())
            resp = Response(500, "fake server error:\n" + self.errors[-1])
        req.response = resp
        if resp.delay > 0 and self._stopping.wait(resp.delay):
            resp = replace(resp, drop_connection=True)  # server stopping
        if resp.drop_connection:
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return
        self._write(h, resp)

    def _record(self, h: _Handler) -> Recorded:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        parts = urlsplit(h.path)
        headers = CIDict(h.headers.items())
        ctype = headers.get("Content-Type", "").split(";")[0].strip().lower()
        req = Recorded(
            received=time.monotonic(),
            wall_time=time.time(),
            method=h.command,
            path=parts.path,
            query=parse_pairs(parts.query),
            headers=headers,
            body=body,
        )
        if ctype == "application/json" or ctype.endswith("+json"):
            with contextlib.suppress(ValueError):
                req.json = json.loads(body or b"null")
        elif ctype == "application/x-www-form-urlencoded":
            req.form = parse_pairs(body.decode("utf-8", "replace"))
        with self._cond:
            self._requests.append(req)
            self._cond.notify_all()
        return req

    def _write(self, h: _Handler, resp: Response) -> None:
        headers = CIDict(resp.headers)
        if isinstance(resp.body, (dict, list)):
            payload = json.dumps(resp.body).encode()
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        elif isinstance(resp.body, str):
            payload = resp.body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            payload = resp.body or b""
        try:
            h.send_response(resp.status or 200)
            for k, v in headers.items():
                h.send_header(k, str(v))
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(payload)
        except OSError:
            h.close_connection = True  # client gave up (e.g. its timeout fired)
