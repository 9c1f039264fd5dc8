"""`mllmret serve` on any loopback address (::1 included) answers; other Host headers are refused."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install -e '.[web]'")

from fastapi.testclient import TestClient  # noqa: E402
from web_fixtures import build_library  # noqa: E402

from mllm_retrieval.web.app import create_app  # noqa: E402
from mllm_retrieval.web.hosts import header_host, is_loopback  # noqa: E402


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "127.255.0.9", "localhost", "LocalHost",
                                  "localhost.", "::1", "[::1]", "0:0:0:0:0:0:0:1"])
def test_loopback_names_and_addresses(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.2", "attacker.example", "127.0.0.1.evil.com",
                                  "localhost.evil.com", "[::2]", "", "::ffff:8.8.8.8"])
def test_other_hosts_are_not_loopback(host):
    assert not is_loopback(host)


@pytest.mark.parametrize("header,host", [("[::1]:8000", "::1"), ("[::1]", "::1"), ("::1", "::1"),
                                         ("localhost:80", "localhost"), ("127.0.0.1", "127.0.0.1")])
def test_host_header_without_port(header, host):
    assert header_host(header) == host


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return build_library(tmp_path_factory.mktemp("hosts"))[0]


@pytest.mark.parametrize("header,status", [
    ("[::1]:8000", 200), ("[::1]", 200), ("127.0.0.2:8000", 200), ("localhost:8000", 200),
    ("LOCALHOST", 200), ("attacker.example", 400), ("127.0.0.1.evil.com", 400), ("[::2]:8000", 400),
])
def test_a_local_app_answers_every_loopback_host_header(library, header, status):
    with TestClient(create_app(library, mode="keyword"), base_url="http://127.0.0.1") as c:
        assert c.get("/api/library", headers={"Host": header}).status_code == status


def _ipv6_loopback() -> int | None:
    """A free port on ::1, or None where this machine has no IPv6 loopback."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
            return s.getsockname()[1]
    except OSError:
        return None


def test_serve_on_ipv6_loopback_answers_requests(library, tmp_path):
    port = _ipv6_loopback()
    if port is None:
        pytest.skip("this machine has no IPv6 loopback (binding ::1 failed)")
    code = "import sys; from mllm_retrieval.cli import app; sys.argv[0] = 'mllmret'; app()"
    cmd = [sys.executable, "-c", code, "serve", "--host", "::1", "--port", str(port),
           "--mode", "keyword", "--db", str(library)]
    env = {**os.environ, "MLLMRET_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        body, deadline = None, time.time() + 60
        while body is None and time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://[::1]:{port}/api/library", timeout=5) as r:
                    body = json.loads(r.read())
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        assert body is not None, f"no answer from [::1]:{port}"
        assert body["images"] >= 4
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Warning" not in err and f"http://[::1]:{port}/" in err
