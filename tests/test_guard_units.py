"""``serve``'s request guard driven as ASGI in process: the security headers on every
answer, the Host allow list (health exempt), the bearer token and the dashboard's session
cookie, the login form's every answer, the bound on requests handled at once; and the
token's, cookie's and Host header's parsing at each boundary."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from worker.http import guard as guard_module
from worker.http.guard import (
    COOKIE,
    Guard,
    GuardOptions,
    Token,
    _cookie,
    _header,
    check_token,
    host_of,
    is_loopback,
    login_page,
)

SECRET = "s3cret-token-0123456789abcdef"
TOKEN = Token(SECRET)
NOW = 1_700_000_000
DEFAULT_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
LOGIN_CSP = (b"default-src 'none'; form-action 'self'; frame-ancestors 'none'; "
             b"base-uri 'none'")
SECURITY = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"), (b"cache-control", b"no-store"),
            (b"content-security-policy", DEFAULT_CSP)]
CHALLENGE = b'Bearer realm="petsage-heartbeat"'
Message = dict[str, Any]


def _mac(expires: int) -> str:
    return hmac.new(SECRET.encode(), f"session:{expires}".encode(), hashlib.sha256).hexdigest()


class App:
    """The app behind the guard: answers 200 ``ok`` (with ``headers``), records each scope;
    waits for ``gate`` when given one, raises when ``fail`` is set."""

    def __init__(self, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.headers = list(headers)
        self.scopes: list[dict[str, Any]] = []
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        self.scopes.append(scope)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("the app failed")
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), *self.headers]})
        await send({"type": "http.response.body", "body": b"ok"})


def scope(path: str = "/api/heartbeats", method: str = "GET", host: str | None = "localhost",
          headers: Sequence[tuple[str, str]] = (), scheme: str = "http") -> dict[str, Any]:
    raw = [] if host is None else [(b"host", host.encode("latin-1"))]
    raw += [(k.encode(), v.encode("latin-1")) for k, v in headers]
    return {"type": "http", "path": path, "method": method, "headers": raw, "scheme": scheme}


class Result:
    def __init__(self, sent: list[Message]) -> None:
        self.sent = sent
        start = sent[0]
        assert start["type"] == "http.response.start"
        self.status: int = start["status"]
        self.headers: list[tuple[bytes, bytes]] = list(start["headers"])
        self.body = b"".join(m.get("body", b"") for m in sent[1:])

    def header(self, name: bytes) -> bytes | None:
        values = [v for k, v in self.headers if k == name]
        assert len(values) <= 1, name
        return values[0] if values else None


async def _drive(app: Any, request: dict[str, Any], body: Sequence[Message] = ()) -> list[Message]:
    sent: list[Message] = []
    messages = list(body)

    async def receive() -> Message:
        assert messages, "the guard read past the request's last message"
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await app(request, receive, send)
    return sent


def call(options: GuardOptions, request: dict[str, Any], body: Sequence[Message] = (),
         app: App | None = None) -> Result:
    return Result(asyncio.run(_drive(Guard(app or App(), options), request, body)))


def _post(*chunks: bytes) -> list[Message]:
    return [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)]


LOOPBACK = GuardOptions(allowed_hosts=frozenset({"localhost", "127.0.0.1", "::1"}))
WITH_TOKEN = GuardOptions(token=TOKEN)


# The token, the cookie and the header parsing.

def test_the_token_never_shows_and_matches_in_either_type() -> None:
    assert repr(TOKEN) == "Token('***')"
    assert TOKEN.matches(SECRET) and TOKEN.matches(SECRET.encode())
    assert not TOKEN.matches(SECRET + "x") and not TOKEN.matches(b"")
    assert not TOKEN.matches("\udcff")  # undecodable bytes of a header: refused, not an error


def test_a_session_is_its_expiry_and_the_token_s_mac_of_it() -> None:
    assert TOKEN.session(NOW) == f"{NOW}.{_mac(NOW)}"
    assert TOKEN.valid_session(TOKEN.session(NOW), NOW)  # good until (and at) its expiry
    assert TOKEN.valid_session(TOKEN.session(NOW), NOW - 1)
    assert not TOKEN.valid_session(TOKEN.session(NOW), NOW + 0.5)
    assert not TOKEN.valid_session(f"{NOW}.{'0' * 64}", NOW)
    assert not Token("another-token-0123456789").valid_session(TOKEN.session(NOW), NOW)
    assert not TOKEN.valid_session(f"+{NOW}.{_mac(NOW)}", NOW)
    assert not TOKEN.valid_session(f"{NOW}", NOW)
    twelve, thirteen = 999_999_999_999, 1_000_000_000_000  # at most 12 digits
    assert TOKEN.valid_session(TOKEN.session(twelve), NOW)
    assert not TOKEN.valid_session(TOKEN.session(thirteen), NOW)


def test_a_token_setting_is_16_printable_characters_without_blanks() -> None:
    assert check_token("  " + "a" * 16 + "\n", "X") == "a" * 16
    message = ("HEARTBEAT_HTTP_TOKEN is not a usable token; accepted: at least 16 printable "
               "characters without blanks, e.g. the output of `openssl rand -hex 32`")
    for bad in ("a" * 15, "a" * 8 + " " + "a" * 8, "a" * 16 + "\x7f", "a" * 8 + "\t" + "a" * 8):
        with pytest.raises(ValueError) as caught:
            check_token(bad, "HEARTBEAT_HTTP_TOKEN")
        assert str(caught.value) == message, bad


@pytest.mark.parametrize(("header", "host"), [
    ("localhost", "localhost"), (" LocalHost:8080 ", "localhost"), ("example.com.", "example.com"),
    ("example.com.:80", "example.com"), ("[::1]:9808", "::1"), ("[::1]", "::1"),
    ("[::1", "[::1"), ("::1", "::1"), ("fe80::1:80", "fe80::1:80"), ("a:b", "a"),
])
def test_the_host_of_a_host_header(header: str, host: str) -> None:
    assert host_of(header) == host


def test_loopback_binds() -> None:
    for bind in ("localhost", "::1", "127.0.0.1", "127.9.9.9"):
        assert is_loopback(bind), bind
    for bind in ("0.0.0.0", "::", "128.0.0.1", "10.127.0.1", "localhost.example", ""):
        assert not is_loopback(bind), bind


def test_headers_and_cookies_are_read_by_exact_name() -> None:
    request = scope(headers=[("x-a", "caf\xe9"), ("x-a", "second"),
                             ("cookie", f"a=1; {COOKIE}=v=x ;b=2")])
    assert _header(request, b"x-a") == "caf\xe9"
    assert _header(request, b"x-b") is None
    assert _cookie(request, COOKIE) == "v=x"
    assert _cookie(request, "b") == "2"
    assert _cookie(request, "c") is None
    assert _cookie(scope(), COOKIE) is None


def test_the_login_page_whole() -> None:
    expected = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PetSage heartbeat: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><h1>PetSage heartbeat</h1>{note}
<form method="post" action="login"><label>Token
<input type="password" name="token" autocomplete="current-password" required autofocus>
</label> <button type="submit">Sign in</button></form>
<p>The dashboard needs the token <code>serve</code> was started with
(<code>HEARTBEAT_HTTP_TOKEN</code>); scripts send it as <code>Authorization: Bearer</code>.</p>
</body></html>
"""
    assert login_page() == expected.format(note="").encode()
    assert login_page("a <b>") == expected.format(
        note="<p><strong>a &lt;b&gt;</strong></p>").encode()


# The middleware.

def test_an_answer_that_passes_gets_every_security_header() -> None:
    app = App()
    result = call(GuardOptions(), scope(host=None), app=app)
    assert (result.status, result.body) == (200, b"ok")
    assert result.headers == [(b"content-type", b"text/plain"), *SECURITY]
    assert len(app.scopes) == 1


def test_headers_the_route_set_are_kept() -> None:
    own = [(b"Cache-Control", b"max-age=5"), (b"x-frame-options", b"SAMEORIGIN"),
           (b"content-security-policy", b"default-src 'self'")]
    result = call(GuardOptions(), scope(), app=App(own))
    assert result.headers == [(b"content-type", b"text/plain"), *own,
                              (b"x-content-type-options", b"nosniff"),
                              (b"referrer-policy", b"no-referrer")]


def test_a_start_without_headers_gets_the_security_headers() -> None:
    async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204})

    assert asyncio.run(_drive(Guard(bare, GuardOptions()), scope())) == [
        {"type": "http.response.start", "status": 204, "headers": SECURITY}]


def test_other_scopes_pass_untouched() -> None:
    app = App()
    lifespan = {"type": "lifespan"}
    assert asyncio.run(_drive(Guard(app, LOOPBACK), lifespan)) == []
    assert app.scopes == [lifespan]


def test_a_host_not_allowed_is_421_but_health_is_exempt() -> None:
    detail = (b'{"detail": "this Host is not served here; the server\'s --allowed-host list '
              b'names the hosts it is"}')
    for host in ("evil.example", "evil.example:9808", "127.0.0.2", None):
        app = App()
        result = call(LOOPBACK, scope(host=host), app=app)
        assert (result.status, result.body) == (421, detail), host
        assert result.headers == [(b"content-type", b"application/json"),
                                  (b"content-length", str(len(detail)).encode()), *SECURITY]
        assert app.scopes == []
    for host in ("LOCALHOST:9808", "[::1]:9808", "127.0.0.1"):
        assert call(LOOPBACK, scope(host=host)).status == 200, host
    for path in ("/system/health", "/system/health/billing"):
        assert call(LOOPBACK, scope(path, host="10.1.2.3:9808")).status == 200, path
    assert call(LOOPBACK, scope("/system/healthz", host="10.1.2.3")).status == 421
    assert call(GuardOptions(), scope(host="anything.example")).status == 200


def test_without_the_token_every_path_but_health_is_401() -> None:
    detail = (b'{"detail": "a token is required: send Authorization: Bearer TOKEN, or sign '
              b'in at /login"}')
    for path, method in (("/api/heartbeats", "GET"), ("/metrics", "GET"), ("/", "POST"),
                         ("/system/healthz", "GET")):
        app = App()
        result = call(WITH_TOKEN, scope(path, method), app=app)
        assert (result.status, result.body) == (401, detail), path
        assert result.headers == [(b"content-type", b"application/json"),
                                  (b"content-length", str(len(detail)).encode()),
                                  (b"www-authenticate", CHALLENGE), *SECURITY]
        assert app.scopes == []
    for path in ("/system/health", "/system/health/billing"):
        assert call(WITH_TOKEN, scope(path)).status == 200


def test_the_page_answers_401_with_the_login_form() -> None:
    for method in ("GET", "HEAD"):
        result = call(WITH_TOKEN, scope("/", method))
        assert (result.status, result.body) == (401, login_page()), method
        assert result.headers == [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(login_page())).encode()),
            (b"www-authenticate", CHALLENGE), (b"content-security-policy", LOGIN_CSP),
            *SECURITY[:4]]


def test_a_wrong_token_is_invalid_token_and_a_right_one_passes() -> None:
    invalid = CHALLENGE + b', error="invalid_token"'
    session = f"{COOKIE}={TOKEN.session(NOW + 3600)}"
    for auth in ("Bearer wrong-token", f"Basic {SECRET}", SECRET, f"Bearer {SECRET}x"):
        result = call(WITH_TOKEN, scope(headers=[("authorization", auth), ("cookie", session)]))
        assert result.status == 401, auth  # a header given is judged, the cookie not looked at
        assert result.header(b"www-authenticate") == invalid
    for auth in (f"Bearer {SECRET}", f" bearer  {SECRET} ", f"BEARER {SECRET}"):
        assert call(WITH_TOKEN, scope(headers=[("authorization", auth)])).status == 200, auth


def test_a_session_cookie_passes_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard_module, "time", SimpleNamespace(time=lambda: NOW + 0.5))
    good = f"{COOKIE}={TOKEN.session(NOW + 1)}"
    assert call(WITH_TOKEN, scope(headers=[("cookie", good)])).status == 200
    assert call(WITH_TOKEN, scope("/", headers=[("cookie", good)])).status == 200
    for cookie in (f"{COOKIE}={TOKEN.session(NOW)}", f"other={TOKEN.session(NOW + 1)}"):
        result = call(WITH_TOKEN, scope(headers=[("cookie", cookie)]))
        assert result.status == 401 and result.header(b"www-authenticate") == CHALLENGE


def test_get_login_is_the_form_and_other_methods_405() -> None:
    for method in ("GET", "HEAD"):
        result = call(WITH_TOKEN, scope("/login", method))
        assert (result.status, result.body) == (200, login_page())
        assert result.headers == [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(login_page())).encode()),
            (b"content-security-policy", LOGIN_CSP), *SECURITY[:4]]
    result = call(WITH_TOKEN, scope("/login", "PUT"))
    assert (result.status, result.body) == (405, b'{"detail": "GET or POST only"}')
    assert result.header(b"allow") == b"GET, POST"


def test_the_login_form_trades_the_token_for_a_session_cookie(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard_module, "time", SimpleNamespace(time=lambda: NOW + 0.75))
    expires = NOW + 43_200
    form = f"token={SECRET}%20".encode()
    result = call(WITH_TOKEN, scope("/login", "POST"), _post(form[:10], form[10:]))
    assert (result.status, result.body) == (303, b"")
    assert result.headers == [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"0"),
        (b"location", b"./"),
        (b"set-cookie", f"{COOKIE}={expires}.{_mac(expires)}; Max-Age=43200; Path=/; "
                        "HttpOnly; SameSite=Strict".encode()), *SECURITY]
    https = call(WITH_TOKEN, scope("/login", "POST", scheme="https"),
                 [{"type": "http.request", "body": form}])
    assert https.header(b"set-cookie").endswith(b"; HttpOnly; SameSite=Strict; Secure")


def test_a_wrong_or_missing_token_in_the_form_is_401_with_the_form_again() -> None:
    for form in (b"token=wrong-token-0123456789", b"other=1", b""):
        result = call(WITH_TOKEN, scope("/login", "POST"), _post(form))
        assert (result.status, result.body) == (401, login_page("That is not the token.")), form
        assert result.headers == [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(result.body)).encode()),
            (b"content-security-policy", LOGIN_CSP), (b"www-authenticate", CHALLENGE),
            *SECURITY[:4]]
    bare = call(WITH_TOKEN, scope("/login", "POST"), [{"type": "http.request"}])
    assert bare.status == 401  # a message without a body is an empty form


def test_a_login_form_over_4096_bytes_is_413() -> None:
    form = f"token={SECRET}&pad=".encode()
    exact = form + b"x" * (4096 - len(form))
    assert call(WITH_TOKEN, scope("/login", "POST"), _post(exact[:100], exact[100:])).status == 303
    result = call(WITH_TOKEN, scope("/login", "POST"), _post(exact, b"x", b"never read"))
    assert (result.status, result.body) == (413, b'{"detail": "the form is too large"}')
    assert result.header(b"content-type") == b"application/json"


def test_a_login_form_of_more_than_4_fields_is_refused() -> None:
    with pytest.raises(ValueError):
        call(WITH_TOKEN, scope("/login", "POST"), _post(f"token={SECRET}&a=1&b=2&c=3&d=4".encode()))
    assert call(WITH_TOKEN, scope("/login", "POST"),
                _post(f"token={SECRET}&a=1&b=2&c=3".encode())).status == 303


def test_a_client_gone_mid_form_gets_no_answer() -> None:
    sent = asyncio.run(_drive(Guard(App(), WITH_TOKEN), scope("/login", "POST"),
                              [{"type": "http.request", "body": b"tok", "more_body": True},
                               {"type": "http.disconnect"}]))
    assert sent == []


def test_requests_beyond_max_in_flight_are_503_at_once() -> None:
    async def scenario() -> tuple[list[Message], list[Message], list[Message], dict[str, int]]:
        app = App()
        app.gate = asyncio.Event()
        options = GuardOptions(max_in_flight=2)
        guard = Guard(app, options)
        first = asyncio.create_task(_drive(guard, scope()))
        second = asyncio.create_task(_drive(guard, scope()))
        while len(app.scopes) < 2:
            await asyncio.sleep(0)
        refused = await _drive(guard, scope())
        await _drive(guard, scope())
        app.gate.set()
        await first
        await second
        app.gate = None
        again = await _drive(guard, scope())
        return refused, again, await _drive(guard, scope()), options.stats

    refused, again, third, stats = asyncio.run(scenario())
    busy = Result(refused)
    detail = b'{"detail": "busy: 2 requests are being answered; retry in a second"}'
    assert (busy.status, busy.body) == (503, detail)
    assert busy.headers == [(b"content-type", b"application/json"),
                            (b"content-length", str(len(detail)).encode()),
                            (b"retry-after", b"1"), *SECURITY]
    assert Result(again).status == 200 and Result(third).status == 200
    assert stats == {"busy": 2}
    assert GuardOptions().max_in_flight == 8


def test_a_request_whose_app_fails_frees_its_place() -> None:
    app = App()
    app.fail = True
    guard = Guard(app, GuardOptions(max_in_flight=1))
    with pytest.raises(RuntimeError):
        asyncio.run(_drive(guard, scope()))
    assert guard.in_flight == 0
    app.fail = False
    assert Result(asyncio.run(_drive(guard, scope()))).status == 200
