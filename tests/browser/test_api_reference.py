"""The API reference page in a real browser: Swagger UI (from the flask-openapi3-swagger
package, no CDN) renders every operation of the generated OpenAPI document under the
site's Content-Security-Policy, with no error in the console (SQLite)."""

from __future__ import annotations

import json
import urllib.request

from tests.webui import livekit


def test_the_reference_page_renders_the_document(browser, tmp_path):
    live = livekit.start(f"sqlite:///{tmp_path / 'tanpu.db'}", tmp_path / "server.log")
    try:
        page = browser.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        requested = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(live.url + "/api/v1/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        with urllib.request.urlopen(live.url + "/api/v1/openapi.json") as response:
            document = json.loads(response.read())
        operations = sum(len(methods) for methods in document["paths"].values())
        assert page.locator(".opblock").count() == operations
        assert "Bearer <token>" in page.locator(".info").inner_text()
        assert errors == []
        assert all(url.startswith(live.url) for url in requested), requested
        page.close()
    finally:
        live.stop()
