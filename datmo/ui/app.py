"""The dashboard's web application (WSGI, on Werkzeug): routing, and the security every
request passes before any handler runs.

- Host: only 127.0.0.1, localhost, [::1] and the name the server was asked to bind
  (a page of another site that rebinds its DNS name to 127.0.0.1 is refused).
- Token: the URL `datmo ui` prints carries it once (?token=); the page then lives on a
  cookie (HttpOnly, SameSite=Strict, named for the port, as browsers share cookies
  between the ports of a host). API calls must carry it in the X-Datmo-Token header as
  well, which no other site's page can set (no CORS headers are ever sent).
- Every answer has a Content-Security-Policy with scripts from the dashboard's own
  files only; files of snapshots are sent as attachments in a sandbox, nosniff.
"""

from __future__ import annotations

import hmac
import json
import mimetypes
from collections.abc import Iterable
from importlib import resources
from typing import Any
from urllib.parse import quote

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import wrap_file

from datmo.core.controller import files
from datmo.core.storage.project import ProjectContext
from datmo.errors import AmbiguousId, DatmoError, UsageError
from datmo.errors import NotFound as Missing
from datmo.ui import api

HEADER = "X-Datmo-Token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' blob:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SANDBOX = "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"
PREVIEW = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".svg"}
STATIC = resources.files("datmo.ui") / "static"

GET = ["GET"]  # and HEAD; only tags and messages are ever POSTed
ROUTES = Map(
    [
        Rule("/", endpoint="page", methods=GET),
        Rule("/static/<path:name>", endpoint="static", methods=GET),
        Rule("/files/<ref>/<path:path>", endpoint="file", methods=GET),
        Rule("/api/runs", endpoint="run_list", methods=GET),
        Rule("/api/keys", endpoint="run_keys", methods=GET),
        Rule("/api/runs/<run_id>", endpoint="run_get", methods=GET),
        Rule("/api/runs/<run_id>/log", endpoint="run_log", methods=GET),
        Rule("/api/series", endpoint="series_views", methods=GET),
        Rule("/api/compare", endpoint="compare_runs", methods=GET),
        Rule("/api/diff", endpoint="snapshot_diff", methods=GET),
        Rule("/api/snapshots", endpoint="snapshot_list", methods=GET),
        Rule("/api/snapshots/<ref>/files", endpoint="snapshot_files", methods=GET),
        Rule("/api/sweeps", endpoint="sweep_list", methods=GET),
        Rule("/api/sweeps/<ref>", endpoint="sweep_get", methods=GET),
        Rule("/api/<kind>/<ref>/tags", endpoint="edit_tags", methods=["POST"]),
        Rule("/api/<kind>/<ref>/message", endpoint="edit_message", methods=["POST"]),
    ],
    strict_slashes=False,
)


class Dashboard:
    def __init__(self, ctx: ProjectContext, token: str, port: int, host: str = "127.0.0.1"):
        self.ctx, self.token, self.port = ctx, token, port
        self.cookie = f"datmo-ui-{port}"
        names = {"127.0.0.1", "localhost", "[::1]", host.lower()}
        if ":" in host and not host.startswith("["):
            names.add(f"[{host.lower()}]")
        self.hosts = names

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self.respond(request)
        self._harden(response)
        return response(environ, start_response)

    # -- the gate ----------------------------------------------------------------
    def _host_ok(self, request: Request) -> bool:
        host = (request.host or "").lower()
        name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
        if not name:  # no port given
            name, port = host, ""
        return name in self.hosts and port == str(self.port)

    def _same(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given or "", self.token)

    def respond(self, request: Request) -> Response:
        if not self._host_ok(request):
            return _text(403, "this dashboard answers only to 127.0.0.1 or localhost")
        if request.path == "/favicon.ico":
            return Response(status=204)
        adapter = ROUTES.bind_to_environ(request.environ)
        try:
            endpoint, values = adapter.match()
        except HTTPException as e:
            return _text(e.code or 404, e.description or "not found")
        if endpoint.startswith(("run_", "series", "compare", "snapshot_", "sweep_", "edit_")):
            if not self._same(request.headers.get(HEADER)):
                return _json(403, {"error": "missing or wrong token"})
            return self._api(request, endpoint, dict(values))
        if self._same(request.args.get("token")):  # first visit: token to cookie
            target = request.path + (f"#{request.args['to']}" if request.args.get("to") else "")
            response = Response(status=303, headers={"Location": quote(target, safe="/#")})
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict", path="/")
            return response
        if not self._same(request.cookies.get(self.cookie)):
            return _text(403, "open the address `datmo ui` printed: it carries the token")
        if endpoint == "page":
            return self._page()
        if endpoint == "static":
            return _static(values["name"])
        return self._file(request, values["ref"], values["path"])

    def _api(self, request: Request, endpoint: str, values: dict[str, Any]) -> Response:
        try:
            if endpoint.startswith("edit_"):
                body = self._body(request)
                kind = values.pop("kind")
                if kind not in ("runs", "snapshots"):
                    raise Missing("tags and messages belong to runs and snapshots")
                if endpoint == "edit_message":
                    values["kind"] = kind[:-1]
                result = getattr(api, endpoint)(self.ctx, body, **values)
            else:
                result = getattr(api, endpoint)(self.ctx, request.args, **values)
        except (Missing, AmbiguousId) as e:
            return _json(404, {"error": str(e)})
        except UsageError as e:
            return _json(400, {"error": str(e)})
        except DatmoError as e:
            return _json(409, {"error": str(e)})
        if isinstance(result, bytes):  # a framed binary answer (api.framed)
            response = Response(result, mimetype="application/octet-stream")
        else:
            response = _json(200, result)
        response.headers["Cache-Control"] = "no-store"
        return response

    def _body(self, request: Request) -> dict[str, Any]:
        if request.mimetype != "application/json":
            raise UsageError("send JSON")
        origin = request.headers.get("Origin")
        if origin and origin.split("://", 1)[-1].lower() not in {
            f"{h}:{self.port}" for h in self.hosts
        }:
            raise UsageError("a change must come from the dashboard's own page")
        try:
            body = json.loads(request.get_data(cache=False, as_text=True) or "{}")
        except ValueError:
            raise UsageError("the request's body is not JSON") from None
        if not isinstance(body, dict):
            raise UsageError("the request's body is a JSON object")
        return body

    def _page(self) -> Response:
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        # The token goes into a meta tag for the page's API calls; it is hex, never data.
        page = html.replace("{{token}}", self.token).replace("{{project}}", "")
        response = Response(page, mimetype="text/html")
        response.headers["Cache-Control"] = "no-store"
        return response

    def _file(self, request: Request, ref: str, path: str) -> Response:
        """A file a snapshot holds: an attachment, or an image for an <img> preview."""
        try:
            content = files.read(self.ctx, ref, path)
        except (Missing, AmbiguousId) as e:
            return _text(404, str(e))
        suffix = "." + content.name.rpartition(".")[2].lower() if "." in content.name else ""
        preview = request.args.get("preview") == "1" and suffix in PREVIEW
        if content.path is not None:
            body: Any = wrap_file(request.environ, open(content.path, "rb"))  # noqa: SIM115
        else:
            body = content.data or b""
        kind = mimetypes.guess_type(content.name)[0] if preview else None
        response = Response(
            body, mimetype=kind or "application/octet-stream", direct_passthrough=True
        )
        response.content_length = content.size
        disposition = "inline" if preview else "attachment"
        response.headers["Content-Disposition"] = (
            f"{disposition}; filename*=UTF-8''{quote(content.name, safe='')}"
        )
        response.headers["Content-Security-Policy"] = SANDBOX
        response.headers["Cache-Control"] = "private, no-store"
        return response

    def _harden(self, response: Response) -> None:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers["Referrer-Policy"] = "no-referrer"
        headers["Cross-Origin-Resource-Policy"] = "same-origin"
        headers.pop("Access-Control-Allow-Origin", None)


def _json(status: int, doc: Any) -> Response:
    return Response(
        json.dumps(doc, allow_nan=False, default=str, separators=(",", ":")),
        status=status,
        mimetype="application/json",
    )


def _text(status: int, text: str) -> Response:
    return Response(text + "\n", status=status, mimetype="text/plain")


def _static(name: str) -> Response:
    parts = name.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return _text(404, "not found")
    target = STATIC.joinpath(*parts)
    if not target.is_file():
        return _text(404, "not found")
    kind = mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
    if parts[-1].endswith(".js"):
        kind = "text/javascript"
    response = Response(target.read_bytes(), mimetype=kind)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response
