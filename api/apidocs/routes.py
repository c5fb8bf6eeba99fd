"""Interactive API docs at /api/docs, served entirely from this server.

Swagger UI comes from the pinned `swagger-ui-bundle-v2` wheel (its assets live inside
the Python package), not from a CDN, so the page renders on a machine without internet
and nothing a browser runs depends on a third party. The page carries a strict
Content-Security-Policy: scripts, styles, images and API calls from this origin only.
"""

from __future__ import annotations

import mimetypes
from importlib import resources

from flask import Blueprint, Response, abort, render_template_string, url_for
from swagger_ui_bundle import swagger_ui_path

blp = Blueprint("apidocs", __name__, url_prefix="/api/docs")

# Only the files the page uses (and the favicons); nothing else of the bundle is served.
_ASSETS = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "favicon-16x16.png",
        "favicon-32x32.png",
    }
)
_OWN_ASSETS = frozenset({"init.js"})

# 'unsafe-inline' for styles only: Swagger UI sets style attributes from JavaScript.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>ledgerq API</title>
  <link rel="stylesheet" href="{{ asset('swagger-ui.css') }}">
  <link rel="icon" type="image/png" href="{{ asset('favicon-32x32.png') }}">
</head>
<body data-spec-url="{{ spec_url }}">
  <div id="swagger-ui"></div>
  <script src="{{ asset('swagger-ui-bundle.js') }}"></script>
  <script src="{{ asset('init.js') }}"></script>
</body>
</html>
"""


def _secured(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


@blp.get("")
def page():
    html = render_template_string(
        _PAGE,
        spec_url="/api/v1/openapi.json",
        asset=lambda name: url_for("apidocs.asset", filename=name),
    )
    return _secured(Response(html, mimetype="text/html"))


@blp.get("/assets/<path:filename>")
def asset(filename: str):
    if filename in _ASSETS:
        path = swagger_ui_path / filename
    elif filename in _OWN_ASSETS:
        path = resources.files("api.apidocs") / "static" / filename
    else:
        abort(404)
    mimetype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    response = Response(path.read_bytes(), mimetype=mimetype)
    # The bundle is pinned by the package version: browsers may keep it for a day.
    response.headers["Cache-Control"] = "public, max-age=86400"
    return _secured(response)
