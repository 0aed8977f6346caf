"""The yardstick for bench/web_load.py: a bare FastAPI app that answers /o/{token} with the
same 1x1 GIF as the open pixel (web/pages.py), and nothing else: no token check, no queue,
no database. Run by the bench with the same uvicorn and options as `drip web`, and the
same FastAPI settings (its OpenTelemetry hooks off, web/app.py TELEMETRY_OFF)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response

from web.app import TELEMETRY_OFF
from web.pages import PIXEL
from web.render import NO_STORE

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, telemetry=TELEMETRY_OFF)


@app.get("/o/{token}")
async def pixel(token: str) -> Response:
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)
