"""The probe's own RESP client, in process: against a scripted RESP server in a thread on
127.0.0.1, against a socket that moves a fake clock on, and with TLS contexts recorded.

``check`` runs on every Kubernetes probe through this client, so what it sends (AUTH and
SELECT in the same round trip), what it hands back (every reply type, error replies as
values), how it fails (one line, passwords hidden, socket closed) and its one deadline for
connect and reads are pinned here byte for byte, without a redis-server.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import hiredis
import pytest

from worker.core.errors import ReplyError, StoreUnreachableError
from worker.read import resp_client
from worker.read.resp_client import ProbeClient, encode

SAFETY_S = 10.0
"""How long the scripted server waits on a silent client before it gives up on it."""

WAIT_S = 5.0
"""How long a test waits for the server to see something happen."""


@dataclass
class _Conn:
    """One connection the scripted server accepted: what it received, and when it ended."""

    sock: socket.socket
    data: bytes = b""
    commands: list[list[bytes]] = field(default_factory=list)
    ended: threading.Event = field(default_factory=threading.Event)


class _ScriptedRedis:
    """A RESP server on 127.0.0.1 that answers every ``after`` commands with ``reply``.

    ``reply=None`` never answers (a hung Redis); ``close=True`` closes the connection once
    it has answered (``reply=b""``: closes without answering). Records the exact bytes and
    the commands each connection received."""

    def __init__(self, reply: bytes | None, *, after: int = 1, close: bool = False) -> None:
        self.reply, self.after, self.close = reply, after, close
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.conns: list[_Conn] = []
        self._accepted = threading.Condition()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def conn(self, index: int) -> _Conn:
        """The ``index``-th connection accepted (waits up to ``WAIT_S`` for it: a client
        can connect, fail and close before the server thread has accepted)."""
        with self._accepted:
            assert self._accepted.wait_for(lambda: len(self.conns) > index, WAIT_S)
            return self.conns[index]

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            if self._stop.is_set():
                sock.close()
                return
            conn = _Conn(sock)
            with self._accepted:
                self.conns.append(conn)
                self._accepted.notify_all()
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: _Conn) -> None:
        reader = hiredis.Reader()
        pending = 0
        conn.sock.settimeout(SAFETY_S)
        with conn.sock:
            while True:
                try:
                    data = conn.sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                conn.data += data
                reader.feed(data)
                while (command := reader.gets()) is not False:
                    conn.commands.append(command)
                    pending += 1
                if self.reply is not None and pending >= self.after:
                    pending = 0
                    conn.sock.sendall(self.reply)
                    if self.close:
                        break
        conn.ended.set()

    def stop(self) -> None:
        self._stop.set()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        # Wake accept() up (not with create_connection: a test may have replaced it).
        with socket.socket() as wake, contextlib.suppress(OSError):
            wake.settimeout(1)
            wake.connect(("127.0.0.1", self.port))
        self.listener.close()
        for thread in self._threads:
            thread.join(WAIT_S)


@pytest.fixture
def serve() -> Iterator[Callable[..., _ScriptedRedis]]:
    """Starts scripted servers; all stopped (and their threads joined) at the end."""
    servers: list[_ScriptedRedis] = []

    def start(reply: bytes | None, *, after: int = 1, close: bool = False) -> _ScriptedRedis:
        server = _ScriptedRedis(reply, after=after, close=close)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _ended(conn: _Conn) -> bool:
    """True once the server has seen the client close ``conn`` (waits up to ``WAIT_S``)."""
    return conn.ended.wait(WAIT_S)


def _shown(replies: list[Any]) -> list[Any]:
    """Replies with each error reply shown as ``("error", its text)``."""
    return [("error", str(r)) if isinstance(r, ReplyError) else r for r in replies]


# --- encode ------------------------------------------------------------------------------


def test_encode_is_an_array_of_bulk_strings() -> None:
    """Bytes go as they are, everything else as its ``str`` in UTF-8; lengths in bytes."""
    assert encode(("SET", "kéy", b"\xff\x00\r\n", 12, -1.5)) == (
        b"*5\r\n$3\r\nSET\r\n$4\r\nk\xc3\xa9y\r\n$4\r\n\xff\x00\r\n\r\n$2\r\n12\r\n"
        b"$4\r\n-1.5\r\n")
    assert encode(("PING",)) == b"*1\r\n$4\r\nPING\r\n"
    assert encode(()) == b"*0\r\n"


# --- the URL -----------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://127.0.0.1:6390/0",
     ("127.0.0.1", 6390, False, None, None, 0, {})),
    ("rediss://cache.example:6380/5?ssl_ca_certs=%2Fetc%2Fca.pem&ssl_cert_reqs=none",
     ("cache.example", 6380, True, None, None, 5, {"ssl_ca_certs": "/etc/ca.pem",
                                                   "ssl_cert_reqs": "none"})),
    ("redis://reader:r%40d%3Apw@db.example/",
     ("db.example", 6379, False, "reader", "r@d:pw", 0, {})),
    ("redis://:s3cret@h:1/12", ("h", 1, False, None, "s3cret", 12, {})),
    ("redis://user@h/0", ("h", 6379, False, "user", None, 0, {})),
    ("redis://", ("127.0.0.1", 6379, False, None, None, 0, {})),
    ("rediss://h/0?ssl_cert_reqs=none&ssl_cert_reqs=required&ssl_cert_reqs=none",
     ("h", 6379, True, None, None, 0, {"ssl_cert_reqs": "none"})),
])
def test_the_url_gives_host_port_tls_auth_db_and_options(
        url: str, expected: tuple[Any, ...]) -> None:
    """Port 6379 and database 0 by default, user and password percent-decoded (an empty
    user is none), and the last of a repeated query parameter wins."""
    client = ProbeClient(url, timeout_s=2.5)
    assert (client.host, client.port, client.tls, client.username, client.password, client.db,
            client.ssl_options) == expected
    assert client.timeout_s == 2.5


# --- the exchange ------------------------------------------------------------------------


def test_one_round_trip_sends_exact_bytes_and_reuses_the_connection(
        serve: Callable[..., _ScriptedRedis]) -> None:
    """No AUTH or SELECT without a password or a database; the next call goes over the same
    connection; ``close`` closes it (twice is fine) and the call after reconnects."""
    server = serve(b"+PONG\r\n")
    client = ProbeClient(server.url, timeout_s=5)
    client.close()  # never connected: nothing to close
    assert client.execute_many([("PING",)]) == [b"PONG"]
    assert client.execute_many([("PING",)]) == [b"PONG"]
    assert len(server.conns) == 1
    assert server.conns[0].data == b"*1\r\n$4\r\nPING\r\n" * 2
    client.close()
    client.close()
    assert _ended(server.conn(0))
    assert client.execute_many([("PING",)]) == [b"PONG"]
    assert len(server.conns) == 2
    with client:
        pass
    assert _ended(server.conn(1))


def test_the_socket_has_nagle_off(serve: Callable[..., _ScriptedRedis]) -> None:
    """A probe's few small writes go out at once (TCP_NODELAY)."""
    server = serve(b"+PONG\r\n")
    with ProbeClient(server.url, timeout_s=5) as client:
        client.execute_many([("PING",)])
        assert client._sock is not None
        assert client._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_every_reply_type_is_parsed_and_error_replies_are_values(
        serve: Callable[..., _ScriptedRedis]) -> None:
    """Simple and bulk strings as bytes (binary kept), integers, nil, nested and nil arrays,
    and an error reply as a ``ReplyError`` in its place, not raised: the batch goes on, and
    so does the connection."""
    replies = (b"+OK\r\n$5\r\nhello\r\n$-1\r\n:42\r\n*3\r\n$1\r\na\r\n:-7\r\n*1\r\n$-1\r\n"
               b"*-1\r\n-ERR no such thing\r\n$0\r\n\r\n*0\r\n$3\r\n\xff\r\n\r\n")
    server = serve(replies, after=10)
    commands: list[tuple[Any, ...]] = [("CMD", str(i)) for i in range(10)]
    with ProbeClient(server.url, timeout_s=5) as client:
        got = client.execute_many(commands)
        assert _shown(got) == [b"OK", b"hello", None, 42, [b"a", -7, [None]], None,
                               ("error", "ERR no such thing"), b"", [], b"\xff\r\n"]
        assert type(got[6]) is ReplyError
        assert client.execute_many(commands)[:2] == [b"OK", b"hello"]
    assert len(server.conns) == 1
    assert server.conns[0].commands == [[b"CMD", str(i).encode()] for i in range(10)] * 2


@pytest.mark.parametrize(("url", "prelude"), [
    ("redis://:pw@127.0.0.1:{port}", b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"),
    ("redis://reader:r%40d@127.0.0.1:{port}/0",
     b"*3\r\n$4\r\nAUTH\r\n$6\r\nreader\r\n$3\r\nr@d\r\n"),
    ("redis://127.0.0.1:{port}/7", b"*2\r\n$6\r\nSELECT\r\n$1\r\n7\r\n"),
    ("redis://reader:r%40d@127.0.0.1:{port}/12",
     b"*3\r\n$4\r\nAUTH\r\n$6\r\nreader\r\n$3\r\nr@d\r\n*2\r\n$6\r\nSELECT\r\n$2\r\n12\r\n"),
    ("redis://user@127.0.0.1:{port}/0", b""),
])
def test_auth_and_select_go_first_in_the_same_round_trip(
        url: str, prelude: bytes, serve: Callable[..., _ScriptedRedis]) -> None:
    """AUTH with the password (and the ACL user when there is one; a user alone sends none),
    then SELECT, written with the commands in one go; their replies are not handed back."""
    count = prelude.count(b"*") + 2
    server = serve(b"+OK\r\n" * (count - 2) + b"$1\r\nv\r\n:3\r\n", after=count)
    with ProbeClient(url.format(port=server.port), timeout_s=5) as client:
        assert client.execute_many([("GET", "k"), ("STRLEN", "k")]) == [b"v", 3]
    assert server.conns[0].data == (
        prelude + b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$6\r\nSTRLEN\r\n$1\r\nk\r\n")


@pytest.mark.parametrize(("url", "replies", "message"), [
    ("redis://:wrong-pw@127.0.0.1:{port}/0",
     b"-WRONGPASS invalid username-password pair or user is disabled.\r\n+PONG\r\n",
     "AUTH failed: WRONGPASS invalid username-password pair or user is disabled."),
    ("redis://u:pw@127.0.0.1:{port}/3",
     b"+OK\r\n-ERR DB index is out of range\r\n+PONG\r\n",
     "SELECT failed: ERR DB index is out of range"),
    ("redis://:pw@127.0.0.1:{port}/0",
     b"-ERR from redis://u:hunter2@h:1/0\r\n+PONG\r\n",
     "AUTH failed: ERR from redis://u:***@h:1/0"),
])
def test_a_failed_auth_or_select_is_unreachable_and_closes(
        url: str, replies: bytes, message: str, serve: Callable[..., _ScriptedRedis]) -> None:
    """The store can't be asked: one line naming the command (never its password), and the
    connection is closed so that the next call starts again."""
    server = serve(replies, after=replies.count(b"\r\n"))
    client = ProbeClient(url.format(port=server.port), timeout_s=5)
    with pytest.raises(StoreUnreachableError) as caught:
        client.execute_many([("PING",)])
    assert str(caught.value) == message
    assert _ended(server.conn(0))
    client.close()


def test_a_closed_connection_is_unreachable_and_closes(
        serve: Callable[..., _ScriptedRedis]) -> None:
    """Redis closing mid-batch (after one of two replies) is not taken as an empty reply."""
    server = serve(b"+PONG\r\n", close=True, after=2)
    client = ProbeClient(server.url, timeout_s=5)
    with pytest.raises(StoreUnreachableError, match=r"^Redis closed the connection$"):
        client.execute_many([("PING",), ("PING",)])
    assert _ended(server.conn(0))
    assert client._sock is None


def test_a_protocol_error_is_unreachable_and_closes(
        serve: Callable[..., _ScriptedRedis]) -> None:
    """Something that is not RESP on the port: one line naming hiredis's error."""
    server = serve(b"?oops\r\n")
    client = ProbeClient(server.url, timeout_s=5)
    with pytest.raises(StoreUnreachableError) as caught:
        client.execute_many([("PING",)])
    assert str(caught.value) == 'ProtocolError: Protocol error, got "?" as reply type byte'
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert _ended(server.conn(0))


def test_nothing_listening_is_unreachable() -> None:
    """A refused connection: one line with the OS's error."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with pytest.raises(StoreUnreachableError) as caught:
        ProbeClient(f"redis://127.0.0.1:{port}/0", timeout_s=5).execute_many([("PING",)])
    assert str(caught.value) == "ConnectionRefusedError: [Errno 111] Connection refused"


def test_a_server_that_never_answers_times_out(serve: Callable[..., _ScriptedRedis]) -> None:
    """A hung Redis: the read gives up at the deadline, and the socket is closed."""
    server = serve(None)
    client = ProbeClient(server.url, timeout_s=0.2)
    with pytest.raises(StoreUnreachableError, match=r"^TimeoutError: timed out$"):
        client.execute_many([("PING",)])
    assert _ended(server.conn(0))
    assert client._sock is None


# --- one deadline, on a fake clock -------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


class _SlowSocket:
    """A connected socket whose every ``recv`` takes ``step_s`` on the clock and hands back
    the next chunk (then end of stream)."""

    def __init__(self, clock: _Clock, chunks: list[bytes], step_s: float) -> None:
        self.clock, self.chunks, self.step_s = clock, chunks, step_s
        self.timeouts: list[float | None] = []
        self.sent = b""
        self.closed = False

    def setsockopt(self, *args: int) -> None:
        pass

    def settimeout(self, timeout_s: float | None) -> None:
        self.timeouts.append(timeout_s)

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def recv(self, size: int) -> bytes:
        self.clock.now += self.step_s
        return self.chunks.pop(0) if self.chunks else b""

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(resp_client, "time", SimpleNamespace(monotonic=clock.monotonic))
    return clock


def _connect_to(sock: object, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """``socket.create_connection`` hands back ``sock``; returns the (address, timeout) of
    each call."""
    calls: list[tuple[Any, Any]] = []

    def create_connection(address: Any, timeout: Any = "no timeout") -> object:
        calls.append((address, timeout))
        if isinstance(sock, BaseException):
            raise sock
        return sock

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return calls


def test_one_deadline_bounds_connect_and_every_read(
        clock: _Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply that trickles in is not given a fresh timeout per read: each read gets what
    is left of the call's one deadline, and the call ends when nothing is left."""
    sock = _SlowSocket(clock, [b"$3\r\n", b"a", b"b", b"c\r\n"], step_s=0.4)
    calls = _connect_to(sock, monkeypatch)
    client = ProbeClient("redis://127.0.0.1:6390/0", timeout_s=1.0)
    with pytest.raises(StoreUnreachableError, match=r"^timed out$"):
        client.execute_many([("GET", "k")])
    assert calls == [((b"127.0.0.1", 6390), 1.0)]
    assert sock.timeouts == pytest.approx([1.0, 0.6, 0.2])
    assert sock.sent == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    assert sock.closed and client._sock is None


def test_replies_in_pieces_are_put_together(
        clock: _Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replies split anywhere across reads (two in one read, one across three) all come
    back, in order, within the deadline."""
    sock = _SlowSocket(clock, [b"+O", b"K\r\n:1", b"\r\n$2\r", b"\nab\r\n"], step_s=0.1)
    _connect_to(sock, monkeypatch)
    with ProbeClient("redis://127.0.0.1:6390/0", timeout_s=1.0) as client:
        assert client.execute_many([("A",), ("B",), ("C",)]) == [b"OK", 1, b"ab"]
    assert sock.timeouts == pytest.approx([1.0, 0.9, 0.8, 0.7])


@pytest.mark.parametrize(("timeout_s", "connected"), [(0.0, False), (0.5, True)])
def test_no_time_left_means_no_connect(timeout_s: float, connected: bool, clock: _Clock,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing left of the deadline (exactly 0 s) the call gives up before it
    connects; with half a second left it connects with that as its timeout."""
    sock = _SlowSocket(clock, [b"+PONG\r\n"], step_s=0.0)
    calls = _connect_to(sock, monkeypatch)
    client = ProbeClient("redis://127.0.0.1:6390/0", timeout_s=timeout_s)
    if connected:
        assert client.execute_many([("PING",)]) == [b"PONG"]
        assert calls == [((b"127.0.0.1", 6390), 0.5)]
    else:
        with pytest.raises(StoreUnreachableError, match=r"^timed out$"):
            client.execute_many([("PING",)])
        assert calls == []


def test_a_non_ascii_host_goes_to_the_resolver_as_text(
        clock: _Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ASCII host is passed as bytes (no codec import), any other as ``str`` (IDNA);
    the OS's error, passwords hidden, is the one line."""
    calls = _connect_to(OSError("no route to redis://u:hunter2@h:1/0"), monkeypatch)
    with pytest.raises(StoreUnreachableError) as caught:
        ProbeClient("redis://bücher.example:6390/0", timeout_s=1.0).execute_many([("PING",)])
    assert str(caught.value) == "OSError: no route to redis://u:***@h:1/0"
    assert calls == [(("bücher.example", 6390), 1.0)]


# --- TLS ---------------------------------------------------------------------------------


class _Context(ssl.SSLContext):
    """A real client context (ssl itself checks the settings made on it) that records the
    certificate chain loaded and the wrap, and hands back the plain socket (the scripted
    server speaks no TLS) or raises ``fail``."""

    chain: tuple[str, str | None] | None = None
    wrapped: tuple[float | None, str | None] | None = None
    fail: BaseException | None = None

    def load_cert_chain(self, certfile: Any, keyfile: Any = None,
                        password: Any = None) -> None:
        self.chain = (certfile, keyfile)

    def wrap_socket(self, sock: Any, server_side: bool = False,  # type: ignore[override]
                    do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                    server_hostname: Any = None, session: Any = None) -> Any:
        self.wrapped = (sock.gettimeout(), server_hostname)
        if self.fail is not None:
            raise self.fail
        return sock


@pytest.fixture
def contexts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, _Context]]:
    """Every context the client makes, with the ``cafile`` it asked for."""
    made: list[tuple[Any, _Context]] = []

    def create_default_context(*args: Any, **kwargs: Any) -> _Context:
        assert set(kwargs) <= {"cafile"} and not args
        context = _Context(ssl.PROTOCOL_TLS_CLIENT)
        made.append((kwargs.get("cafile", "not passed"), context))
        return context

    monkeypatch.setattr(ssl, "create_default_context", create_default_context)
    return made


REQUIRED, NONE = ssl.CERT_REQUIRED, ssl.CERT_NONE


@pytest.mark.parametrize(("query", "expected"), [
    ("", (None, True, REQUIRED, None)),
    ("?ssl_ca_certs=/etc/ca.pem", ("/etc/ca.pem", True, REQUIRED, None)),
    ("?ssl_cert_reqs=required", (None, True, REQUIRED, None)),
    ("?ssl_cert_reqs=none", (None, False, NONE, None)),
    ("?ssl_cert_reqs=CERT_NONE", (None, False, NONE, None)),
    ("?ssl_cert_reqs=none&ssl_check_hostname=true", (None, False, NONE, None)),
    ("?ssl_check_hostname=false", (None, False, REQUIRED, None)),
    ("?ssl_check_hostname=0", (None, False, REQUIRED, None)),
    ("?ssl_check_hostname=No", (None, False, REQUIRED, None)),
    ("?ssl_check_hostname=true", (None, True, REQUIRED, None)),
    ("?ssl_check_hostname=yes", (None, True, REQUIRED, None)),
    ("?ssl_certfile=/c.pem&ssl_keyfile=/k.pem", (None, True, REQUIRED, ("/c.pem", "/k.pem"))),
    ("?ssl_certfile=/c.pem", (None, True, REQUIRED, ("/c.pem", None))),
    ("?ssl_keyfile=/k.pem", (None, True, REQUIRED, None)),
])
def test_rediss_verifies_unless_told_and_takes_the_url_tls_options(
        query: str, expected: tuple[Any, ...], contexts: list[tuple[Any, _Context]],
        serve: Callable[..., _ScriptedRedis]) -> None:
    """Certificate and host name checked by default; ``ssl_cert_reqs=none`` turns both off,
    ``ssl_check_hostname=false|0|no`` the host name only; a CA bundle and a client
    certificate (with its key, if given) from the URL. The wrap gets the host name and
    what is left of the deadline."""
    server = serve(b"+PONG\r\n")
    with ProbeClient(f"rediss://127.0.0.1:{server.port}/0{query}", timeout_s=5) as client:
        assert client.execute_many([("PING",)]) == [b"PONG"]
    [(cafile, context)] = contexts
    assert (cafile, context.check_hostname, context.verify_mode, context.chain) == expected
    assert context.wrapped is not None
    timeout_s, hostname = context.wrapped
    assert hostname == "127.0.0.1"
    assert timeout_s is not None and 0 < timeout_s <= 5


def test_plain_redis_makes_no_tls_context(contexts: list[tuple[Any, _Context]],
                                          serve: Callable[..., _ScriptedRedis]) -> None:
    server = serve(b"+PONG\r\n")
    with ProbeClient(server.url + "?ssl_cert_reqs=none", timeout_s=5) as client:
        assert client.execute_many([("PING",)]) == [b"PONG"]
    assert contexts == []


def test_an_untrusted_certificate_says_how_to_trust_it(
        contexts: list[tuple[Any, _Context]], serve: Callable[..., _ScriptedRedis],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The one line names the server and OpenSSL's reason and points at ``ssl_ca_certs``;
    the TCP connection is closed."""
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "self-signed certificate in certificate chain"
    monkeypatch.setattr(_Context, "fail", error)
    server = serve(b"+PONG\r\n")
    client = ProbeClient(f"rediss://127.0.0.1:{server.port}/0", timeout_s=5)
    with pytest.raises(StoreUnreachableError) as caught:
        client.execute_many([("PING",)])
    assert str(caught.value) == (
        f"TLS certificate of 127.0.0.1:{server.port} was not trusted (self-signed certificate "
        "in certificate chain); pass ?ssl_ca_certs=/path/ca.pem")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert _ended(server.conn(0))
    assert client._sock is None
