"""The agent's HTTP side: ``POST /inspect``, ``GET /status``, ``GET /metrics`` and the live view at ``/``.

:mod:`feed` is what the inspection loop writes for the live view (no web
framework needed to import it); :mod:`app` is the FastAPI application,
:mod:`uploads` checks what is posted to it, and :mod:`server` runs it with
uvicorn on a thread beside the inspection loop.
"""
