"""The webhook POST itself, in process against loopback receivers in threads: HTTPS with the
certificate verified, exactly the headers documented, the URL's path (or ``/``), one
deadline that also covers a connect that never completes, and one line for an answer that
is not HTTP. ``tests/test_delivery_units.py`` covers the delivery loop around it."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.certs import make_certs
from worker.observe.delivery import _refusal, post

DEADLINE_S = 0.5
"""The timeout given to ``post`` where the test waits for it to give up."""

GIVES_UP_WITHIN_S = DEADLINE_S + 10.0
"""The promise (the timeout) plus headroom for a busy machine."""


class _Receiver:
    """A loopback HTTP(S) server that answers 201 and keeps each request's headers."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        seen = self.seen = []  # type: list[dict[str, Any]]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                seen.append({"headers": list(self.headers.keys()), "path": self.path,
                             "body": self.rfile.read(length)})
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        scheme = "https" if context is not None else "http"
        self.origin = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_certs(tmp_path_factory.mktemp("certs"), "receiver")


@pytest.fixture
def tls_receiver(certs: dict[str, Path]) -> Iterator[_Receiver]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs["crt"], certs["key"])
    receiver = _Receiver(context)
    yield receiver
    receiver.close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    yield server
    server.close()


def test_a_post_over_tls_to_a_trusted_certificate_is_delivered(
        tls_receiver: _Receiver, certs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certs["ca"]))  # the system's trust, as a user sets it
    assert post(tls_receiver.origin + "/hook", b'{"a": 1}', 5) == 201
    (request,) = tls_receiver.seen
    assert request["path"] == "/hook" and request["body"] == b'{"a": 1}'


def test_a_certificate_nobody_trusts_is_refused(
        tls_receiver: _Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = make_certs(tmp_path, "other")  # a CA that did not sign the receiver's certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(other["ca"]))
    with pytest.raises(ssl.SSLCertVerificationError):
        post(tls_receiver.origin + "/hook", b"{}", 5)
    assert tls_receiver.seen == []


def test_exactly_the_documented_headers_are_sent(receiver: _Receiver) -> None:
    assert post(receiver.origin + "/hook", b"{}", 5) == 201
    (request,) = receiver.seen
    # Host and Accept-Encoding are http.client's own; nothing else leaves the process.
    assert request["headers"] == ["Host", "Accept-Encoding", "Content-Type", "User-Agent",
                                  "Content-Length"]


def test_a_url_without_a_path_posts_to_the_root(receiver: _Receiver) -> None:
    assert post(receiver.origin, b"{}", 5) == 201
    assert post(receiver.origin + "?a=1", b"{}", 5) == 201
    assert [r["path"] for r in receiver.seen] == ["/", "/?a=1"]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_connect_that_never_completes_is_cut_at_the_deadline(scheme: str) -> None:
    # A listener whose one-place accept queue is taken: the kernel drops the next SYNs, so
    # a connect waits, as to a host that is down, until the caller's timeout.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held = socket.create_connection(("127.0.0.1", port))
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            post(f"{scheme}://127.0.0.1:{port}/hook", b"{}", DEADLINE_S)
        assert time.monotonic() - start < GIVES_UP_WITHIN_S
    finally:
        held.close()
        listener.close()


def test_an_answer_that_is_not_http_is_one_line() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer() -> None:
        peer, _ = listener.accept()
        with peer:
            peer.recv(65536)
            peer.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with pytest.raises(ConnectionError) as caught:
            post(f"http://127.0.0.1:{listener.getsockname()[1]}/", b"{}", 5)
        assert str(caught.value) == "a malformed answer (BadStatusLine)"
    finally:
        thread.join(10)
        listener.close()


def test_an_unsupported_scheme_is_named_cut_at_ten_characters() -> None:
    with pytest.raises(ValueError) as caught:
        post("gopher-plus-more://127.0.0.1/", b"{}", 5)
    assert str(caught.value) == "unsupported scheme 'gopher-plu'"


@pytest.mark.parametrize(("status", "line"), [
    (300, "HTTP 300, a redirect: not followed"),
    (399, "HTTP 399, a redirect: not followed"),
    (400, "HTTP 400"),
    (299, "HTTP 299"),
])
def test_a_refusal_says_whether_it_was_a_redirect(status: int, line: str) -> None:
    assert _refusal(status) == line
