"""HEAD works wherever GET does; images (and every response) carry Cross-Origin-Resource-Policy."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from web_fixtures import build_library

from mllm_retrieval.library.store import Store
from mllm_retrieval.web.app import create_app


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    db, _ = build_library(tmp_path_factory.mktemp("headers"))
    with TestClient(create_app(db, mode="keyword"), base_url="http://127.0.0.1") as c:
        c.image_id = Store(db).db.execute("SELECT id FROM images WHERE path LIKE '%blue.jpg'").fetchone()[0]
        yield c


def _paths(image_id: int) -> list[str]:
    return ["/", "/static/app.js", "/api/library", "/api/search?q=blue", f"/api/images/{image_id}",
            f"/api/images/{image_id}/thumbnail", f"/api/images/{image_id}/file", "/api/images/999999",
            "/api/images/999999/file", "/api/search?mode=nope", "/api/openapi.json"]


def test_head_answers_as_get_without_a_body(client):
    for path in _paths(client.image_id):
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code != 405, path
        assert head.content == b"", path
        for name in ("content-type", "content-length", "etag", "cache-control"):
            assert head.headers.get(name) == get.headers.get(name), (path, name)


def test_every_response_forbids_cross_origin_embedding(client):
    for path in _paths(client.image_id):
        assert client.get(path).headers["cross-origin-resource-policy"] == "same-origin", path
    cached = client.get(f"/api/images/{client.image_id}/thumbnail",
                        headers={"If-None-Match": client.get(f"/api/images/{client.image_id}/thumbnail")
                                 .headers["etag"]})
    assert cached.status_code == 304 and cached.headers["cross-origin-resource-policy"] == "same-origin"


def test_other_methods_are_still_refused(client):
    assert client.post("/api/search?q=blue").status_code == 405
    assert client.head("/api/search", headers={"Host": "evil.example"}).status_code == 400
