"""The explorer's files as the server serves them: the page, its script and style, open
without an API key while the API stays closed. (The page's behaviour is tested in a
real browser: test_explorer.py, and test_production.py for the key.)"""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from tests.inprocess import StandInBackend


def client_for(settings: Settings) -> TestClient:
    async def factory(_: Settings) -> StandInBackend:
        return StandInBackend()

    return TestClient(create_app(settings, factory))


def test_the_page_serves_its_own_script_and_style_and_nothing_from_elsewhere() -> None:
    with client_for(Settings()) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for asset, kind in (("explorer.js", "javascript"), ("explorer.css", "css")):
            assert f'"/explorer/{asset}"' in page.text
            response = client.get(f"/explorer/{asset}")
            assert response.status_code == 200 and kind in response.headers["content-type"]
            # Offline: no URL of another host anywhere (the SVG namespace is a name).
            urls = set(re.findall(r"https?://[^\s\"')]+", response.text)) - {
                "http://www.w3.org/2000/svg"
            }
            assert not urls, urls
        assert "/explorer/other.js" not in page.text
        assert client.get("/explorer/other.js").status_code == 404


def test_with_an_api_key_the_page_is_open_and_the_api_is_not() -> None:
    with client_for(Settings(api_key=("k" * 24,))) as client:
        for path in ("/", "/explorer/explorer.js", "/explorer/explorer.css"):
            assert client.get(path).status_code == 200, path
        assert client.get("/v1/models").status_code == 401
        assert client.post("/v1/solve", json={"question": "1+1?"}).status_code == 401
        assert client.get("/explorer/missing.js").status_code == 401  # not an open path
