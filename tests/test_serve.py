"""`smoltui serve` behind its token: a real server on a free loopback port, asked as a browser and a stranger would."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from typer.testing import CliRunner

from smoltui.cli import app as cli_app
from smoltui.cli.ui_commands import is_loopback
from smoltui.serve import REFUSAL, served_url, token_cookie_name

SMOLTUI = Path(sys.executable).parent / "smoltui"
PRINTED_URL = re.compile(r"smoltui dashboard on (\S+) ")


@dataclass
class Served:
    port: int
    process: subprocess.Popen
    url: str = ""
    warning: str = ""
    log: str = ""  # everything it printed after the URL line, read once it has stopped

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(*options: str) -> Iterator[Served]:
    """`smoltui serve` in a subprocess on a free port, once it accepts connections; stopped by SIGTERM after."""
    port = free_port()
    process = subprocess.Popen(
        [str(SMOLTUI), "serve", "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = Served(port, process)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"serve did not listen on port {port}: {process.communicate()}")
                time.sleep(0.2)
        served.url = PRINTED_URL.match(process.stdout.readline()).group(1)
        if "--no-token" in options:
            served.warning = process.stderr.readline()
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            served.log = process.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            served.log = process.communicate()[0]


def a_browser() -> aiohttp.ClientSession:
    # aiohttp's jar refuses cookies from bare IP addresses unless told otherwise; a browser keeps them.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_serve_refuses_requests_and_websockets_without_its_token(workspace, monkeypatch):
    """Neither the page, a static file, a wrong token nor the websocket gets past the gate without the token."""
    monkeypatch.delenv("SMOLTUI_TOKEN", raising=False)
    with serving() as served:
        assert re.fullmatch(rf"http://127\.0\.0\.1:{served.port}/\?token=[\w-]{{32}}", served.url)
        async with a_browser() as stranger:
            for path in ("/", "/static/js/textual.js", "/?token=guessed", "/?token=%C3%A9"):
                async with stranger.get(served.base + path) as response:
                    assert response.status == 403, path
                    assert await response.text() == REFUSAL
                    assert not response.cookies
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await stranger.ws_connect(f"ws://127.0.0.1:{served.port}/ws?width=80&height=24")
            assert refused.value.status == 403


async def test_serve_page_opened_with_its_token_lets_its_static_files_and_websocket_in(workspace, monkeypatch):
    """The printed URL answers the page and a strict cookie, which then opens static files and the websocket."""
    monkeypatch.delenv("SMOLTUI_TOKEN", raising=False)
    with serving() as served:
        token = served.url.split("?token=")[1]
        async with a_browser() as browser:
            async with browser.get(served.url) as page:
                html = await page.text()
                assert page.status == 200 and "smoltui" in html
                cookie = page.cookies[token_cookie_name(served.port)]
                assert cookie.value == token and cookie["httponly"] and cookie["samesite"] == "Strict"
            assert 'src="/static/js/textual.js"' in html
            websocket_url = re.search(r'data-session-websocket-url="([^"]+)"', html).group(1)
            assert websocket_url == f"ws://127.0.0.1:{served.port}/ws"
            async with browser.get(served.base + "/static/js/textual.js") as script:
                assert script.status == 200
            # The page's JS appends the terminal size to the URL; the cookie alone lets it in (101 Switching).
            async with browser.ws_connect(websocket_url + "?width=80&height=24") as websocket:
                assert not websocket.closed
            # Reached through a tunnel as localhost:9000, the page points its websocket there, where the cookie is.
            async with browser.get(served.base + "/", headers={"Host": "localhost:9000"}) as tunnelled:
                assert 'data-session-websocket-url="ws://localhost:9000/ws"' in await tunnelled.text()
    assert "[hidden]" in served.log and token not in served.log


async def test_serve_without_token_answers_anyone_and_says_so(workspace):
    with serving("--no-token") as served:
        assert served.url == f"http://127.0.0.1:{served.port}/"
        assert served.warning.startswith("warning: serving without a token: every user of this machine")
        async with a_browser() as anyone:
            async with anyone.get(served.base + "/") as page:
                assert page.status == 200 and "smoltui" in await page.text()
            async with anyone.ws_connect(f"ws://127.0.0.1:{served.port}/ws?width=80&height=24") as websocket:
                assert not websocket.closed


@pytest.fixture
def served_servers(monkeypatch):
    """What `smoltui serve` would serve, caught before it listens."""
    from smoltui.serve import DashboardServer

    served: list[DashboardServer] = []
    monkeypatch.setattr(DashboardServer, "serve", lambda self, debug=False: served.append(self))
    monkeypatch.delenv("SMOLTUI_TOKEN", raising=False)
    return served


def test_serve_warns_when_listening_beyond_loopback(served_servers, workspace):
    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--port", "8123"])
    assert result.exit_code == 0
    assert "warning: listening on 0.0.0.0 sends the token and the dashboard unencrypted" in result.output
    server = served_servers[0]
    assert server.host == "0.0.0.0" and "smoltui --workspace" in server.command
    assert f"http://0.0.0.0:8123/?token={server.token}" in result.output

    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--no-token"])
    assert "WARNING: serving on 0.0.0.0 without a token: anyone who reaches this machine" in result.output
    assert served_servers[1].token is None
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_serve_takes_its_token_from_the_option_or_smoltui_token(served_servers, workspace, monkeypatch):
    result = CliRunner().invoke(cli_app, ["serve", "--token", "from-option"])
    assert "http://127.0.0.1:8000/?token=from-option " in result.output
    monkeypatch.setenv("SMOLTUI_TOKEN", "from-env")
    result = CliRunner().invoke(cli_app, ["serve", "--port", "8001"])
    assert "http://127.0.0.1:8001/?token=from-env " in result.output
    assert [server.token for server in served_servers] == ["from-option", "from-env"]
    assert served_url("::1", 8000, "t") == "http://[::1]:8000/?token=t"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--token", "x", "--no-token"], "--no-token contradicts the token given by --token or $SMOLTUI_TOKEN"),
        (["--token", ""], "--token must not be empty; pass --no-token to serve without one"),
    ],
)
def test_serve_refuses_contradictory_token_options_in_one_line(served_servers, workspace, options, message):
    result = CliRunner().invoke(cli_app, ["serve", *options])
    assert result.exit_code == 2 and not served_servers
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_serve_on_a_taken_port_is_one_line(workspace):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(SMOLTUI), "serve", "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 2
    assert (
        result.stderr
        == f"error: cannot listen on 127.0.0.1:{port} (Address already in use); choose another --port or --host.\n"
    )
