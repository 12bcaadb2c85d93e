"""GraphiQL served from the package: the page (GET /graphql in a browser) and its assets
(GET /graphql/assets/<name>), all files of schema/graphiql/ — no CDN, so the playground works offline.
Why they are vendored, their versions and how to refresh them: schema/graphiql/README.md."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

DIRECTORY = Path(__file__).with_name("graphiql")
PAGE = "index.html"
# What the page may load, by name: the URL names a file of this list, never a path.
CONTENT_TYPES = {
    "graphiql.min.css": "text/css; charset=utf-8",
    "graphiql.min.js": "text/javascript; charset=utf-8",
    "react.production.min.js": "text/javascript; charset=utf-8",
    "react-dom.production.min.js": "text/javascript; charset=utf-8",
}
# An asset's URL carries its content's digest (?v=), so a URL never names other bytes: cached for good.
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass
class Asset:
    body: bytes
    content_type: str
    version: str
    _gzipped: bytes | None = None

    async def gzipped(self) -> bytes:
        """Compressed on first demand, once per process (1.6 MB → 0.65 MB), in a worker thread: the JS
        takes ~0.1 s, which would stall every request on the event loop."""
        if self._gzipped is None:
            self._gzipped = await run_in_threadpool(gzip.compress, self.body, compresslevel=6, mtime=0)
        return self._gzipped


@cache
def assets() -> dict[str, Asset]:
    """Read once per process, on the first page or asset asked for: apps that never serve GraphiQL
    (most tests, API-only replicas) never read the 1.6 MB."""
    found = {}
    for name, content_type in CONTENT_TYPES.items():
        body = (DIRECTORY / name).read_bytes()
        found[name] = Asset(body, content_type, hashlib.sha256(body).hexdigest()[:16])
    return found


@cache
def _page_template() -> str:
    """index.html with every {{asset:<name>}} made a versioned URL below {{base}} (the GraphQL path)."""
    html = (DIRECTORY / PAGE).read_text(encoding="utf-8")
    for name, asset in assets().items():
        html = html.replace("{{asset:" + name + "}}", "{{base}}/assets/" + name + "?v=" + asset.version)
    if "{{asset:" in html:
        raise RuntimeError(f"{DIRECTORY / PAGE} names an asset not in ide.CONTENT_TYPES")
    return html


async def page(request: Request) -> HTMLResponse:
    # Read (and the assets hashed) in a worker thread the first time: 1.6 MB, off the event loop.
    template = await run_in_threadpool(_page_template)
    # The path the browser asked for (with a proxy's root_path): assets resolve below it.
    base = request.url.path.rstrip("/")
    # Not cached: a new release's page must name its new asset URLs.
    return HTMLResponse(template.replace("{{base}}", base), headers={"Cache-Control": "no-cache"})


async def asset(request: Request) -> Response:
    found = (await run_in_threadpool(assets)).get(request.path_params["name"])
    if found is None:
        raise HTTPException(404)
    current = request.query_params.get("v") == found.version
    headers = {
        # An unversioned or stale URL must not be pinned to these bytes.
        "Cache-Control": IMMUTABLE if current else "no-cache",
        "ETag": f'"{found.version}"',
        "Vary": "Accept-Encoding",
    }
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    body = found.body
    if "gzip" in request.headers.get("accept-encoding", ""):
        body = await found.gzipped()
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=found.content_type, headers=headers)
