"""The dashboard in a browser behind a token: textual-serve's server, with every request checked for the token.

Like Jupyter: `smoltui serve` prints a URL that carries a random token. The first page request brings it in the
query (`/?token=...`); the answer sets it as an HttpOnly, SameSite=Strict cookie, so the page's own static files
and its websocket (whose URL textual-serve's JS builds, with no room for a token) carry it from then on. Any
request with neither answers 403 before it reaches a route, so a websocket without the token is never upgraded.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from textual_serve.server import Server, to_int

TOKEN_PARAMETER = "token"
TOKEN_IN_QUERY = re.compile(rf"(?<=[?&]{TOKEN_PARAMETER}=)[^&\s\"]+")
REFUSAL = "403 Forbidden: smoltui wants its token; open the whole URL that `smoltui serve` printed (?token=...).\n"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token() -> str:
    return secrets.token_urlsafe(24)


def served_url(host: str, port: int, token: str | None) -> str:
    """The URL to open: `http://127.0.0.1:8000/?token=...` (IPv6 addresses in brackets)."""
    shown_host = f"[{host}]" if ":" in host else host
    query = f"?{TOKEN_PARAMETER}={token}" if token else ""
    return f"http://{shown_host}:{port}/{query}"


def token_cookie_name(port: int) -> str:
    # Cookies ignore the port, so two servers on one host each need their own name not to log each other out.
    return f"smoltui_token_{port}"


def _matches(offered: str | None, token: str) -> bool:
    # compare_digest takes str only when it is ASCII; a query may hold anything, so compare the bytes.
    return offered is not None and secrets.compare_digest(offered.encode(), token.encode())


def token_middleware(token: str, cookie_name: str) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """An aiohttp middleware that answers 403 unless the request brings the token in its query or its cookie."""

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        from_query = _matches(request.query.get(TOKEN_PARAMETER), token)
        if not from_query and not _matches(request.cookies.get(cookie_name), token):
            return web.Response(status=403, text=REFUSAL)
        response = await handler(request)
        if from_query and not response.prepared:
            response.set_cookie(
                cookie_name,
                token,
                httponly=True,
                samesite="Strict",
                secure=request.scheme == "https",
                path="/",
            )
        return response

    return check_token


class HideTokens(logging.Filter):
    """Keeps the token out of the access log.

    Its lines hold request paths and referers, and a log may land in a file that more people read than the
    terminal that showed the URL.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = TOKEN_IN_QUERY.sub("[hidden]", record.msg)
        return True


class DashboardServer(Server):
    """textual-serve's Server, behind a token when given one, with the page's URLs taken from the request.

    textual-serve writes absolute URLs for the static files and the websocket from the address it listens on;
    a browser that reached it as `localhost`, or through an SSH tunnel on another port, would then ask another
    origin, which gets no cookie. So the page here names static files by path and the websocket by the host
    the browser asked for.
    """

    def __init__(self, command: str, *, host: str, port: int, token: str | None, title: str = "smoltui") -> None:
        super().__init__(command, host=host, port=port, title=title)
        self.token = token

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        if self.token is not None:
            app.middlewares.append(token_middleware(self.token, token_cookie_name(self.port)))
        return app

    def initialize_logging(self) -> None:
        super().initialize_logging()
        logging.getLogger("aiohttp.access").addFilter(HideTokens())

    async def on_startup(self, app: web.Application) -> None:
        """Print nothing: textual-serve's banner shows the URL without its token; the command prints the real one."""

    @aiohttp_jinja2.template("app_index.html")
    async def handle_index(self, request: web.Request) -> dict[str, Any]:
        websocket_scheme = "wss" if request.scheme == "https" else "ws"
        return {
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": f"{websocket_scheme}://{request.host}{request.app.router['websocket'].url_for()}",
            "config": {"static": {"url": str(request.app.router["static"].url_for(filename="/")).rstrip("/") + "/"}},
            "application": {"name": self.title},
        }
