"""GraphiQL from the package (fluxopus/schema/ide.py, the files of fluxopus/schema/graphiql/): the page
names no URL of another host, every asset it names answers from this server with its content type and
a long cache, and the wheel ships them. In a real browser with no network: tests/test_graphiql_browser.py."""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from fluxopus.schema import ide

ROOT = Path(__file__).resolve().parents[1]
ASSET_DIR = ROOT / "fluxopus" / "schema" / "graphiql"
HTML = {"Accept": "text/html,application/xhtml+xml"}  # what a browser's navigation sends
CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


async def page(client: httpx.AsyncClient) -> str:
    response = await client.get("/graphql", headers=HTML)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"  # a release's new asset URLs reach browsers
    return response.text


def referenced(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]*)"', html)


async def test_the_page_names_no_other_host(client: httpx.AsyncClient) -> None:
    html = await page(client)
    # Anything a browser could resolve to another host: absolute, protocol-relative or ws URLs.
    assert re.findall(r"(?:https?:|wss?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, flags=re.IGNORECASE) == []
    urls = referenced(html)
    assert len(urls) == 5, urls  # the stylesheet, three scripts and the (inline) icon
    for url in urls:
        assert url == "data:," or url.startswith("/graphql/assets/"), url
    assert "Loading…" in html and "{{" not in html  # every placeholder filled


async def test_the_page_explains_the_token_and_carries_a_fluxopus_query(client: httpx.AsyncClient) -> None:
    html = await page(client)
    assert 'id="fluxopus-token"' in html
    assert "fluxopus token --email you@example.com --company Acme" in html
    assert "connection_init" in html and "Authorization: Bearer" in html
    assert '"query Me {"' in html and '"  me {"' in html and '"  tasks {"' in html


async def test_every_asset_answers_with_its_type_and_a_long_cache(client: httpx.AsyncClient) -> None:
    urls = [u for u in referenced(await page(client)) if u.startswith("/graphql/assets/")]
    assert {Path(urlsplit(u).path).name for u in urls} == set(ide.CONTENT_TYPES)
    for url in urls:
        name = Path(urlsplit(url).path).name
        body = (ASSET_DIR / name).read_bytes()
        response = await client.get(url, headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200, (url, response.text[:200])
        assert response.headers["content-type"] == CONTENT_TYPES[Path(name).suffix], url
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable", url
        assert "content-encoding" not in response.headers
        assert response.content == body
        assert urlsplit(url).query == f"v={hashlib.sha256(body).hexdigest()[:16]}"

        compressed = await client.get(url, headers={"Accept-Encoding": "gzip"})
        assert compressed.headers["content-encoding"] == "gzip"
        assert compressed.headers["vary"] == "Accept-Encoding"
        assert int(compressed.headers["content-length"]) < len(body) * 0.7
        assert compressed.content == body  # httpx decoded it

        again = await client.get(url, headers={"If-None-Match": response.headers["etag"]})
        assert (again.status_code, again.content) == (304, b"")


async def test_an_asset_asked_without_its_version_is_not_cached_for_good(client: httpx.AsyncClient) -> None:
    for query in ("", "?v=0123456789abcdef"):
        response = await client.get(f"/graphql/assets/graphiql.min.css{query}")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-cache"


async def test_only_the_listed_assets_are_served(client: httpx.AsyncClient) -> None:
    for name in ("index.html", "README.md", "nope.js", "..%2Fide.py", "%2E%2E%2Frouter.py", "LICENSE-react"):
        response = await client.get(f"/graphql/assets/{name}")
        assert response.status_code == 404, name
        assert response.json()["error"].startswith("No route for GET /graphql/assets/"), name


async def test_graphql_over_get_still_answers_json(client: httpx.AsyncClient) -> None:
    """The page is for a browser's navigation; a query string or a JSON Accept still gets GraphQL."""
    response = await client.get("/graphql", params={"query": "{ __typename }"}, headers=HTML)
    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}


def test_the_wheel_ships_the_page_and_its_assets() -> None:
    """setuptools packages only what [tool.setuptools.package-data] names (an editable install hides a
    missing file): every file of the directory — assets, page, licences — must match its patterns."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["fluxopus.schema"]
    shipped = sorted(p.relative_to(ASSET_DIR.parent).as_posix() for p in ASSET_DIR.iterdir())
    assert [f for f in shipped if not any(fnmatch.fnmatch(f, p) for p in patterns)] == []
    assert {"graphiql/index.html", "graphiql/LICENSE-graphiql", "graphiql/LICENSE-react"} <= set(shipped)


def test_the_readme_pins_the_files_served() -> None:
    """graphiql/README.md lists each vendored file's SHA-256: refreshed files come with their record."""
    readme = (ASSET_DIR / "README.md").read_text()
    pinned = dict((name, digest) for digest, name in re.findall(r"`([0-9a-f]{64})`\s+`([\w.-]+)`", readme))
    assert pinned == {name: hashlib.sha256((ASSET_DIR / name).read_bytes()).hexdigest() for name in ide.CONTENT_TYPES}


async def test_gzip_is_made_once_and_decodes_to_the_file() -> None:
    asset = ide.assets()["react.production.min.js"]
    first = await asset.gzipped()
    assert await asset.gzipped() is first
    assert gzip.decompress(first) == asset.body
