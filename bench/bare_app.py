"""The baseline of ``bench/ingress.py``: a bare Litestar endpoint that only verifies and parses.

``POST /webhooks/github`` reads the raw body, checks ``X-Hub-Signature-256`` (HMAC-SHA256 over the raw
bytes, compared with ``hmac.compare_digest``), parses the JSON and answers ``202`` with a small JSON
body. No routing, no store, no worker, no logging, no metrics: what any receiver must do at least.

It is served exactly like ``bridge serve`` (``bridge.cli.run_server``): uvicorn (one ingress process), uvloop,
httptools, access log off, no server header, Litestar without OpenAPI or logging config::

    BENCH_SECRET=... .venv/bin/python bench/bare_app.py --port 8081

The JSON is parsed with msgspec, the decoder Litestar itself uses for ``request.json()``, which is
faster than the standard library's ``json`` (the bridge parses with msgspec as well), so the baseline
is as fast as a bare Litestar endpoint gets.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, post

SECRET = os.environ.get("BENCH_SECRET", "bench-webhook-secret").encode()
MAX_BODY = 25 * 1024 * 1024
_decode = msgspec.json.Decoder().decode


@post("/webhooks/github", status_code=202)
async def webhook(request: Request[Any, Any, Any]) -> Response[Any]:
    body = await request.body()
    given = request.headers.get("x-hub-signature-256") or ""
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.encode("ascii", "replace")):
        return Response({"error": "signature_mismatch"}, status_code=401)
    try:
        payload = _decode(body)
    except msgspec.DecodeError:
        return Response({"error": "malformed_payload"}, status_code=400)
    if not isinstance(payload, dict):
        return Response({"error": "malformed_payload"}, status_code=400)
    return Response(
        {"status": "accepted", "delivery_id": request.headers.get("x-github-delivery")}, status_code=202
    )


app = Litestar(
    route_handlers=[webhook],
    openapi_config=None,
    logging_config=None,
    debug=False,
    request_max_body_size=MAX_BODY,
)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="the bare verify-and-parse endpoint")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
