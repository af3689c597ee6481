"""The agent's HTTP API and live view, as a FastAPI application (its OpenAPI schema at ``/openapi.json``).

- ``POST /inspect``: a JPEG or PNG in, the verdict out (:class:`InspectResult`);
  the image goes through the running model beside the camera frames, so the
  numbers are those MQTT would carry for the same pixels. It is not published.
- ``GET /status``: the :class:`Status` MQTT carries.
- ``GET /metrics``: Prometheus.
- ``GET /``: the live view; ``GET /live/events`` (Server-Sent Events) and
  ``GET /live/frame.jpg`` feed it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool

from edge_inspector.config import HttpConfig
from edge_inspector.messages import InspectResult, Status
from edge_inspector.web.feed import LiveFeed
from edge_inspector.web.uploads import FIELD, IMAGE_TYPES, UploadRejected, decode_image, read_upload

__all__ = ["STATUS_EVERY_S", "AgentHooks", "build_app"]

STATIC = Path(__file__).parent / "static"
STATUS_EVERY_S = 2.0
_POLL_S = 0.25

_ERRORS = {
    code: {"description": text, "content": {"application/json": {"example": {"detail": "one line saying why"}}}}
    for code, text in {
        400: "empty, corrupt or not an image",
        401: "missing or wrong bearer token",
        413: "over the size or pixel limit",
        415: "not multipart/form-data, image/jpeg or image/png; or not a JPEG or PNG",
        503: "too many images waiting for the model, or the agent is stopping",
        504: "not inspected within http.timeout_s",
    }.items()
}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {FIELD: {"type": "string", "format": "binary"}},
                }
            },
            **{kind: {"schema": {"type": "string", "format": "binary"}} for kind in IMAGE_TYPES},
        },
    }
}


@dataclass(frozen=True)
class AgentHooks:
    """What the HTTP side needs of the agent.

    ``submit`` queues an image (RGB) for the model and returns its answer's
    future, or None when ``http.max_pending`` images already wait.
    """

    status: Callable[[], Status]
    submit: Callable[[np.ndarray], Future[InspectResult] | None]
    feed: LiveFeed
    registry: CollectorRegistry
    stopping: threading.Event


def build_app(hooks: AgentHooks, settings: HttpConfig) -> FastAPI:
    """The application serving one agent."""
    app = FastAPI(
        title="Edge Inspector agent",
        summary="Inspect an image, read the station's status and metrics, watch the line.",
        docs_url=None,  # Swagger UI and ReDoc load from a CDN: not on an air-gapped line
        redoc_url=None,
    )
    token = settings.token.get_secret_value() if settings.token else None
    max_bytes = int(settings.max_upload_mb * 1024 * 1024)

    @app.exception_handler(UploadRejected)
    async def _rejected(_request: Request, exc: UploadRejected) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.post("/inspect", response_model=InspectResult, responses=_ERRORS, openapi_extra=_UPLOAD_BODY)
    async def inspect(request: Request) -> InspectResult:
        """Inspect one image (form field ``image``, or the body as image/jpeg or image/png)."""
        if token is not None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
        if hooks.stopping.is_set():
            raise HTTPException(503, "the agent is stopping")
        image = await run_in_threadpool(decode_image, await read_upload(request, max_bytes))
        future = hooks.submit(image)
        if future is None:
            raise HTTPException(
                503, f"busy: {settings.max_pending} images already wait for the model", headers={"Retry-After": "1"}
            )
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), settings.timeout_s)
        except asyncio.TimeoutError:  # TimeoutError from 3.11 on
            raise HTTPException(504, f"not inspected within {settings.timeout_s:g} s") from None
        except ValueError as exc:  # the model could not take this image
            raise HTTPException(400, f"could not inspect the image: {exc}") from None

    @app.get("/status", response_model=Status)
    def status() -> Status:
        """The station's status, as on the MQTT ``status`` topic."""
        return hooks.status()

    @app.get("/metrics", response_class=Response)
    def metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(hooks.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def live_view() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/live/frame.jpg", response_class=Response, responses={204: {"description": "no frame yet"}})
    def live_frame() -> Response:
        """The newest inspected frame with its heatmap (header ``X-Feed-Number``: the verdict it belongs to)."""
        picture = hooks.feed.picture()
        if picture is None:
            return Response(status_code=204)
        number, jpeg = picture
        return Response(
            jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store", "X-Feed-Number": str(number)}
        )

    @app.get("/live/events", response_class=StreamingResponse)
    async def live_events(request: Request) -> StreamingResponse:
        """Server-Sent Events: ``verdict`` for each verdict (the last 50 first, or those after the
        ``Last-Event-ID`` a reconnecting browser sends), ``status`` every 2 s."""
        last = request.headers.get("last-event-id", "")
        seen = int(last) if last.isdigit() and int(last) <= hooks.feed.newest else 0  # larger: the agent restarted
        return StreamingResponse(
            _events(hooks, seen), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _events(hooks: AgentHooks, seen: int) -> AsyncIterator[str]:
    next_status = 0.0
    while not hooks.stopping.is_set():
        for entry in hooks.feed.since(seen):
            seen = entry.number
            yield f"event: verdict\nid: {entry.number}\ndata: {json.dumps(entry.verdict)}\n\n"
        if time.monotonic() >= next_status:
            next_status = time.monotonic() + STATUS_EVERY_S
            status = await run_in_threadpool(hooks.status)  # the spool's depth: SQLite, off the event loop
            yield f"event: status\ndata: {status.model_dump_json()}\n\n"
        await asyncio.sleep(_POLL_S)
