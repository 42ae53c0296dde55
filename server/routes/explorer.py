"""`GET /`: the search explorer, a static page that runs searches and draws their trees
(left out of the OpenAPI document).

The page and its script and style ship inside the package (`server/explorer/`) and
are read once, so the explorer works offline. They are open without an API key
(`EXPLORER_PATHS`: they hold no data); the page asks for the key and sends it with
its API calls, which are refused without it like any other client's.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter()

#: The explorer's files: URL path -> (file in `server/explorer`, media type).
ASSETS: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/explorer/explorer.js": ("explorer.js", "text/javascript; charset=utf-8"),
    "/explorer/explorer.css": ("explorer.css", "text/css; charset=utf-8"),
}
#: Served without an API key.
EXPLORER_PATHS = frozenset(ASSETS)


@cache
def _asset(name: str) -> bytes:
    return files("server.explorer").joinpath(name).read_bytes()


def _serve(path: str) -> Response:
    name, media_type = ASSETS[path]
    return Response(_asset(name), media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.get("/", include_in_schema=False)
async def explorer_page() -> Response:
    return _serve("/")


@router.get("/explorer/explorer.js", include_in_schema=False)
async def explorer_script() -> Response:
    return _serve("/explorer/explorer.js")


@router.get("/explorer/explorer.css", include_in_schema=False)
async def explorer_style() -> Response:
    return _serve("/explorer/explorer.css")
