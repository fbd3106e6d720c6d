"""What ``petsage-heartbeat serve`` checks before a request reaches a route.

One ASGI middleware, in this order:

1. every answer (refusals too) gets ``X-Content-Type-Options: nosniff``,
   ``Cache-Control: no-store``, ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY``
   and a Content-Security-Policy (``default-src 'none'`` unless the route set its own: the
   dashboard allows its own inline script and style by hash);
2. the ``Host`` header must be an allowed host (DNS rebinding: a hostile page whose name
   resolves to 127.0.0.1 sends its own name), else **421**; ``/system/health`` is exempt,
   as load balancers and kubelets send an address of their own;
3. with a token, every path but ``/system/health`` and ``/login`` needs
   ``Authorization: Bearer TOKEN`` or the dashboard's session cookie (set by ``/login``),
   else **401** with ``WWW-Authenticate: Bearer``; the page ``/`` answers 401 with the
   login form;
4. at most ``max_in_flight`` requests are handled at once; another gets **503** with
   ``Retry-After: 1`` at once, rather than waiting for a thread and holding memory.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""The hosts allowed by default when ``serve`` is bound to a loopback address."""

OPEN_PATHS = ("/system/health",)
"""Paths (and their sub-paths) answered without a token and whatever the Host header."""

LOGIN_PATH = "/login"
COOKIE = "petsage_heartbeat_session"
SESSION_S = 12 * 3600
"""How long the dashboard's session cookie lasts."""

MAX_LOGIN_BYTES = 4096
"""The largest login form accepted."""

MIN_TOKEN_CHARS = 16

DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


class Token:
    """The bearer token; its repr never shows it."""

    __slots__ = ("_digest", "_value")

    def __init__(self, value: str) -> None:
        self._value = value.encode()
        self._digest = hashlib.sha256(self._value).digest()

    def __repr__(self) -> str:
        return "Token('***')"

    def matches(self, given: str | bytes) -> bool:
        """Whether ``given`` is the token, in time independent of where they differ."""
        raw = given.encode("utf-8", "surrogateescape") if isinstance(given, str) else given
        return hmac.compare_digest(hashlib.sha256(raw).digest(), self._digest)

    def session(self, expires: int) -> str:
        """A session cookie value good until ``expires`` (epoch seconds)."""
        mac = hmac.new(self._value, f"session:{expires}".encode(), hashlib.sha256)
        return f"{expires}.{mac.hexdigest()}"

    def valid_session(self, value: str, now: float) -> bool:
        expires, _, _mac = value.partition(".")
        if not expires.isdigit() or int(expires) < now or len(expires) > 12:
            return False
        return hmac.compare_digest(self.session(int(expires)).encode(), value.encode())


def check_token(value: str, source: str) -> str:
    """``value`` (a token from ``source``) if usable, else ``ValueError`` with one line that
    never quotes it."""
    value = value.strip()
    if len(value) < MIN_TOKEN_CHARS or any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(f"{source} is not a usable token; accepted: at least "
                         f"{MIN_TOKEN_CHARS} printable characters without blanks, e.g. the "
                         "output of `openssl rand -hex 32`")
    return value


def host_of(header: str) -> str:
    """The host part of a ``Host`` header, lower case, without port or brackets."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def is_loopback(bind: str) -> bool:
    """Whether a bind address only takes connections from this machine."""
    return bind in ("localhost", "::1") or bind.startswith("127.")


@dataclass(frozen=True)
class GuardOptions:
    """What the middleware enforces."""

    allowed_hosts: frozenset[str] | None = None  #: None: any Host header
    token: Token | None = None
    max_in_flight: int = 8
    stats: dict[str, int] = field(default_factory=lambda: {"busy": 0})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    header = _header(scope, b"cookie")
    if header is None:
        return None
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def _answer(send: Send, status: int, body: bytes, content_type: bytes,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _json(detail: str) -> bytes:
    return json.dumps({"detail": detail}).encode()


LOGIN_CSP = ("default-src 'none'; form-action 'self'; frame-ancestors 'none'; "
             "base-uri 'none'")


def login_page(message: str = "") -> bytes:
    """The form that trades the token for a session cookie (no script, no style)."""
    note = f"<p><strong>{html.escape(message)}</strong></p>" if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PetSage heartbeat: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><h1>PetSage heartbeat</h1>{note}
<form method="post" action="login"><label>Token
<input type="password" name="token" autocomplete="current-password" required autofocus>
</label> <button type="submit">Sign in</button></form>
<p>The dashboard needs the token <code>serve</code> was started with
(<code>HEARTBEAT_HTTP_TOKEN</code>); scripts send it as <code>Authorization: Bearer</code>.</p>
</body></html>
""".encode()


class Guard:
    """The ASGI middleware of the module docstring."""

    def __init__(self, app: ASGIApp, options: GuardOptions) -> None:
        self.app = app
        self.options = options
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _secured(send)
        path: str = scope["path"]
        is_open = any(path == p or path.startswith(p + "/") for p in OPEN_PATHS)
        allowed = self.options.allowed_hosts
        if allowed is not None and not is_open:
            host = _header(scope, b"host")
            if host is None or host_of(host) not in allowed:
                await _answer(send, 421, _json("this Host is not served here; the server's "
                                               "--allowed-host list names the hosts it is"),
                              b"application/json")
                return
        token = self.options.token
        if token is not None and not is_open:
            if path == LOGIN_PATH:
                await self._login(scope, receive, send, token)
                return
            refusal = self._unauthorized(scope, token)
            if refusal is not None:
                challenge = b'Bearer realm="petsage-heartbeat"' + (
                    b', error="invalid_token"' if refusal == "invalid" else b"")
                headers = [(b"www-authenticate", challenge)]
                if path == "/" and scope["method"] in ("GET", "HEAD"):
                    await _answer(send, 401, login_page(), b"text/html; charset=utf-8",
                                  [*headers, (b"content-security-policy", LOGIN_CSP.encode())])
                else:
                    await _answer(send, 401, _json(
                        "a token is required: send Authorization: Bearer TOKEN, or sign in "
                        "at /login"), b"application/json", headers)
                return
        if self.in_flight >= self.options.max_in_flight:
            self.options.stats["busy"] += 1
            await _answer(send, 503, _json(f"busy: {self.options.max_in_flight} requests are "
                                           "being answered; retry in a second"),
                          b"application/json", [(b"retry-after", b"1")])
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    @staticmethod
    def _unauthorized(scope: Scope, token: Token) -> str | None:
        """None when the request carries the token (or a session), else ``missing`` or
        ``invalid``."""
        header = _header(scope, b"authorization")
        if header is not None:
            scheme, _, given = header.strip().partition(" ")
            if scheme.lower() == "bearer" and token.matches(given.strip()):
                return None
            return "invalid"
        session = _cookie(scope, COOKIE)
        if session is not None and token.valid_session(session, time.time()):
            return None
        return "missing"

    @staticmethod
    async def _login(scope: Scope, receive: Receive, send: Send, token: Token) -> None:
        """``GET /login``: the form; ``POST /login``: the token for a session cookie."""
        html_type = b"text/html; charset=utf-8"
        csp = (b"content-security-policy", LOGIN_CSP.encode())
        if scope["method"] in ("GET", "HEAD"):
            await _answer(send, 200, login_page(), html_type, [csp])
            return
        if scope["method"] != "POST":
            await _answer(send, 405, _json("GET or POST only"), b"application/json",
                          [(b"allow", b"GET, POST")])
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            if len(body) > MAX_LOGIN_BYTES:
                await _answer(send, 413, _json("the form is too large"), b"application/json")
                return
            if not message.get("more_body", False):
                break
        given = parse_qs(body.decode("latin-1"), max_num_fields=4).get("token", [""])[0]
        if not token.matches(given.strip()):
            await _answer(send, 401, login_page("That is not the token."), html_type,
                          [csp, (b"www-authenticate", b'Bearer realm="petsage-heartbeat"')])
            return
        expires = int(time.time()) + SESSION_S
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = (f"{COOKIE}={token.session(expires)}; Max-Age={SESSION_S}; Path=/; "
                  f"HttpOnly; SameSite=Strict{secure}")
        await _answer(send, 303, b"", b"text/plain; charset=utf-8",
                      [(b"location", b"./"), (b"set-cookie", cookie.encode())])


def _secured(send: Send) -> Send:
    """``send`` adding the security headers to the response's start."""

    async def secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {key.lower() for key, _ in headers}
            headers += [h for h in _SECURITY_HEADERS if h[0] not in names]
            if b"cache-control" not in names:
                headers.append((b"cache-control", b"no-store"))
            if b"content-security-policy" not in names:
                headers.append((b"content-security-policy", DEFAULT_CSP.encode()))
            message = {**message, "headers": headers}
        await send(message)

    return secured
