"""A cap on request bodies for the whole web app, enforced before anything reads one.

Slack's largest payloads (a modal's view_submission with every block) are tens of KiB; REST bodies are
smaller. A body announced larger than MAX_BODY is refused with 413 from its Content-Length alone, before
Bolt (or anything) reads it, so an unsigned 64 MiB POST costs neither memory nor a signature check. A body
without a length (chunked) is refused with 411: Slack always sends Content-Length, and so do REST clients.
MAX_CONTENT_LENGTH is set as well, for anything that reads a stream Werkzeug bounds.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import LengthRequired, RequestEntityTooLarge

MAX_BODY = 1024 * 1024  # 1 MiB


def limit_request_bodies(app: Flask, max_bytes: int = MAX_BODY) -> None:
    app.config["MAX_CONTENT_LENGTH"] = max_bytes

    @app.before_request
    def _refuse_large_bodies() -> None:
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            request.environ["wsgi.input_terminated"] = True
            raise LengthRequired("Send a Content-Length (bodies are limited, chunked ones are not read).")
        length = request.content_length
        if length is not None and length > max_bytes:
            # Answer and close: the rest of the body is never read.
            request.environ["wsgi.input_terminated"] = True
            raise RequestEntityTooLarge(f"Request bodies are limited to {max_bytes} bytes.")
