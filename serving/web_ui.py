"""The optional web page on the REST port (`python -m serving.server --enable_ui`): try a served model on a
photograph in a browser.

Off by default, so that a production server answers exactly as TF Serving does (TF Serving has no page: it
answers 404 outside /v1/). The page is plain HTML, CSS and JavaScript from `serving/ui/`, read once when the
server starts: no path from a URL ever reaches the file system, only the names in `_FILES`. It calls the same
public REST API as any client (model status, `predict_encoded` with base64 images), so its requests meet the
server's limits as any request does. The one thing of ours it reads is `/ui/config.json`: the served model
names with their labels (TF Serving's status API needs a name to ask about) and the limits the page states.
"""

from importlib import resources

from werkzeug.wrappers import Request, Response

from serving import rest_json

UI_PATH = "/ui/"

# The strictest policy the page runs under: its own script and style files only, no inline script or style,
# no outside resource, requests to this server alone (and the blob: URLs of its own results, which it offers for
# download), no forms, no framing.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                           "connect-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

# URL name under /ui/ → (file in serving/ui/, content type).
_FILES = {"": ("index.html", "text/html; charset=utf-8"), "index.html": ("index.html", "text/html; charset=utf-8"),
          "app.js": ("app.js", "text/javascript; charset=utf-8"),
          "style.css": ("style.css", "text/css; charset=utf-8"),
          "icon.svg": ("icon.svg", "image/svg+xml")}

_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache", "Cross-Origin-Opener-Policy": "same-origin"}


class WebPage:
    """`respond(request)`: the page's answer for the paths it owns, None for every other path."""

    def __init__(self, manager, limits, max_body_bytes: int):
        self.manager = manager  # serving.manager.ModelManager: the models served now (reloads included)
        self.limits = limits  # a callable: the serving.service.Limits in force now
        self.max_body_bytes = max_body_bytes
        folder = resources.files("serving") / "ui"
        self._files = {route: (folder.joinpath(name).read_bytes(), content_type)
                       for route, (name, content_type) in _FILES.items()}

    def respond(self, request: Request) -> Response | None:
        path = request.path
        if path == "/":
            return Response("", status=302, headers={"Location": UI_PATH})
        if path == UI_PATH.rstrip("/"):
            return Response("", status=301, headers={"Location": UI_PATH})
        if not path.startswith(UI_PATH):
            return None
        if request.method not in ("GET", "HEAD"):
            return Response("only GET", status=405, headers={"Allow": "GET, HEAD", **_HEADERS})
        name = path[len(UI_PATH):]
        if name == "config.json":
            return Response(rest_json.dumps(self.config()), content_type="application/json", headers=_HEADERS)
        if name not in self._files:
            return Response("not found", status=404, content_type="text/plain", headers=_HEADERS)
        body, content_type = self._files[name]
        return Response(body, content_type=content_type, headers=_HEADERS)

    def config(self) -> dict:
        limits = self.limits()
        models = [{"name": name, "labels": dict(sorted(model.config.version_labels.items()))}
                  for name, model in sorted(dict(self.manager.models).items())]  # a reload may change it
        return {"models": models, "max_pixels": limits.max_pixels, "max_images": limits.max_images,
                "max_body_bytes": self.max_body_bytes}
