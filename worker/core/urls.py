"""Validate Redis and broker URLs, and hide their passwords.

Accepted store URLs: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS,
certificates verified unless ``ssl_cert_reqs=none`` is in the query) and
``sentinel://[[user]:password@]host:port[,host:port...]/db?master=NAME``. A broker URL may
also be ``amqp://``/``amqps://``/``pyamqp://`` (RabbitMQ), which is kombu's business.
"""

from __future__ import annotations

import math
import re
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from worker.core.errors import ConfigError

REDIS_SCHEMES = ("redis", "rediss", "sentinel")
"""Schemes the heartbeat store (and the reader) accept."""

BROKER_SCHEMES = (*REDIS_SCHEMES, "amqp", "amqps", "pyamqp")
"""Schemes accepted for ``CELERY_BROKER_URL``."""

_SCHEME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+.-")
_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_NOT_SPACE = re.compile(r"\S*")
_QUERY_PARAM = re.compile(r"((?:^|[?&;])([^=?&;#\s]*)=)([^&;#\s]*)")
_SECRET_NAME = re.compile(r"(?i)pass|pwd|token|secret|key|auth|signature|credential")
"""A query parameter whose name (percent-decoded) says it holds a secret: ``password=``,
``pass=``, ``pwd=``, ``token=``, ``access_token=``, ``secret=``, ``key=``, ``api_key=``,
``auth=``, ``signature=``, ``credential=``, in any case. Its value is hidden (``ssl_keyfile``'s
path too: a name that may say "key" is hidden rather than guessed about)."""


def _hide_secret_param(match: re.Match[str]) -> str:
    if _SECRET_NAME.search(unquote(match.group(2))):
        return match.group(1) + "***"
    return match.group(0)


def _redact_one(url: str) -> str:
    scheme, _, rest = url.partition("://")
    if "@" in rest:
        # Everything from the first ":" of the userinfo to the LAST "@" of the run is
        # hidden: a password may hold "/", "?", "#" or "@", and a run may hold several
        # URLs (kombu's "sentinel://u:p1@h1;sentinel://u:p2@h2") whose hosts go with it.
        userinfo, host = rest.rsplit("@", 1)
        user = userinfo.split(":", 1)[0] if ":" in userinfo else userinfo
        if ":" in userinfo or "/" in user:
            user = user.split("/", 1)[0]
            rest = f"{user}:***@{host}"
    return f"{scheme}://{_QUERY_PARAM.sub(_hide_secret_param, rest)}"


def redact(text: str) -> str:
    """Replace every password in URLs found in ``text`` with ``***``.

    Used on every URL and every error message before it reaches a log line, the CLI or an
    HTTP response, so a password can't leak through an exception from a client library.
    Covers any scheme case, an ``@`` inside the password, and query parameters named for
    a secret (``?password=``, ``?pass=``, ``?token=``, ``?secret=``, ``?key=``...). A URL
    ends at a space: a password holding one is refused by ``validate_url``, never shown.
    """
    # Linear in the text: each "://" is found once, its scheme extended backwards no
    # further than the previous "://" or URL, and its URL forwards to the next space. (A
    # regex for "scheme://non-space" retries at every letter of a long word: quadratic.)
    if "://" not in text:
        return text
    out: list[str] = []
    done = 0  # text[:done] is copied (and redacted) already
    at = text.find("://")
    while at != -1:
        start = at
        while start > done and text[start - 1] in _SCHEME_CHARS:
            start -= 1
        while start < at and text[start] not in _LETTERS:  # a scheme starts with a letter
            start += 1
        end = _NOT_SPACE.match(text, at + 3).end()  # type: ignore[union-attr]
        if start < at and end > at + 3:
            out += [text[done:start], _redact_one(text[start:end])]
            done = end
        at = text.find("://", max(at + 3, done))
    out.append(text[done:])
    return "".join(out)


def mask_url(url: str) -> str:
    """One URL with nothing secret left, for a repr: ``redact``'s rules on the whole string;
    of an ``http(s)://`` URL (a webhook, the dashboard), only ``scheme://host[:port]`` and
    ``/***`` for the rest, whose path may be a token. A URL holding a space or a control
    character, or that does not parse, keeps only its scheme."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***"
    if any(char.isspace() or not char.isprintable() for char in url):
        return f"{scheme}://***"
    if scheme.lower() not in ("http", "https"):
        return _redact_one(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"{scheme}://***"
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname or ""
    shown = f"{scheme}://{host}" if port is None else f"{scheme}://{host}:{port}"
    return shown if rest == shown.partition("://")[2] else f"{shown}/***"


def masked_repr(value: object) -> str:
    """``repr(value)`` with every URL in it masked (``mask_url``), at any depth of tuples and
    named tuples: settings and what they hold print nothing secret, wherever they print."""
    if isinstance(value, str):
        return repr(mask_url(value)) if "://" in value else repr(value)
    if isinstance(value, tuple):
        fields = getattr(value, "_fields", None)
        if fields is not None:
            inner = ", ".join(f"{name}={masked_repr(item)}"
                              for name, item in zip(fields, value, strict=True))
            return f"{type(value).__name__}({inner})"
        items = [masked_repr(item) for item in value]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    return repr(value)


_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]{2,45}(%[A-Za-z0-9._-]{1,32})?\]")
_NUMBER_PARAMS = ("socket_timeout", "socket_connect_timeout", "health_check_interval")
MAX_URL_TIMEOUT_S = 3600.0
"""The largest timeout or interval a URL's query may set (an hour: a probe must end)."""


def _host_ok(host: str) -> bool:
    """A DNS name (labels of 1-63 characters, 253 in all), an IPv4 or a bracketed IPv6."""
    if host.startswith("["):
        return _IPV6.fullmatch(host) is not None
    labels = host.removesuffix(".").split(".")
    return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def _port_ok(netloc_part: str, source: str, url: str) -> None:
    # The port is never echoed: in a URL with an unencoded "/", "?" or "#" in the
    # password, what urlsplit takes for the port is a piece of that password.
    host, sep, port = netloc_part.rpartition(":")
    if host.startswith("[") and not host.endswith("]") and netloc_part.endswith("]"):
        host, sep, port = netloc_part, "", ""  # a bracketed IPv6 address without a port
    if not sep or port == "":
        if sep:
            raise ConfigError(f"{source} {redact(url)!r} has an empty port; accepted: 1-65535")
        host = netloc_part
    elif not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(
            f"{source} {redact(url)!r} has a bad port; accepted: 1-65535 (a password "
            "holding '/', '?', '#' or '@' must be percent-encoded, e.g. '/' as %2F)")
    if not host.strip("[]"):
        raise ConfigError(f"{source} {redact(url)!r} has no host; e.g. redis://127.0.0.1:6379/0")
    if not _host_ok(host):
        shown = host if len(host) <= 40 else host[:40] + "..."
        raise ConfigError(
            f"{source} has a bad host {shown!r}; accepted: a host name (letters, digits, "
            "'-', '.'; at most 63 characters a label, 253 in all) or an IP address")


def _query_ok(parts: SplitResult, source: str, url: str) -> None:
    """Numeric query parameters a client passes on as numbers: finite, positive, bounded."""
    for name, values in parse_qs(parts.query).items():
        if name not in _NUMBER_PARAMS:
            continue
        try:
            value = float(values[-1])
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and 0 < value <= MAX_URL_TIMEOUT_S):
            raise ConfigError(
                f"{source} {redact(url)!r} has {name}={values[-1][:40]!r}; accepted: a number "
                f"of seconds > 0 and <= {MAX_URL_TIMEOUT_S:g}")


def validate_url(url: str, *, source: str, schemes: tuple[str, ...] = REDIS_SCHEMES) -> str:
    """Return ``url`` unchanged if it is usable, else raise a one-line ``ConfigError``.

    ``source`` names where the URL came from (an environment variable or a flag), so the
    error line tells the user what to fix.
    """
    accepted = ", ".join(s + "://" for s in schemes)
    if any(char.isspace() or not char.isprintable() for char in url):
        # Never echoed, not even redacted: redact() ends a URL at a space, so what follows
        # one (the rest of a password) would show.
        raise ConfigError(
            f"{source} holds a space or a control character (not shown); accepted: a URL "
            "without them (percent-encode them in a password, a space as %20)")
    try:
        parts: SplitResult = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(
            f"{source} {redact(url)!r} is not a URL ({exc}); accepted: {accepted}"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise ConfigError(
            f"{source} has unknown scheme {scheme + '://' if scheme else 'none'} "
            f"in {redact(url)!r}; accepted: {accepted}"
        )
    hostpart = parts.netloc.rpartition("@")[2]
    if not hostpart:
        raise ConfigError(f"{source} {redact(url)!r} has no host; e.g. redis://127.0.0.1:6379/0")
    for one in hostpart.split(",") if scheme == "sentinel" else [hostpart]:
        _port_ok(one, source, url)
    _query_ok(parts, source, url)
    if scheme in REDIS_SCHEMES:
        db = parts.path.strip("/")
        if db and not (db.isdigit() and int(db) < 1_000_000):
            raise ConfigError(
                f"{source} {redact(url)!r} has a bad database {db!r}; accepted: a number, e.g. /0"
            )
    if scheme == "sentinel" and not re.fullmatch(
            r"[A-Za-z0-9._-]{1,64}", (parse_qs(parts.query).get("master") or [""])[-1]):
        raise ConfigError(
            f"{source} {redact(url)!r} names no valid master; "
            "accepted: sentinel://host:26379,host2:26379/0?master=mymaster"
        )
    cluster = (parse_qs(parts.query).get("cluster") or ["false"])[-1].lower()
    if cluster not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{source} {redact(url)!r} has cluster={cluster!r}; accepted: "
                          "cluster=true or cluster=false")
    if is_cluster(url) and (scheme == "sentinel" or parts.path.strip("/") not in ("", "0")):
        raise ConfigError(f"{source} {redact(url)!r}: a Redis Cluster has only database 0 "
                          "and no Sentinel; e.g. redis://node1:7000/0?cluster=true")
    # One spelling downstream: the scheme in lower case (urlsplit accepts REDIS:// too).
    return scheme + url[len(parts.scheme):]


def tls_options(url: str) -> dict[str, object]:
    """TLS settings for kombu from a ``rediss://`` URL's query: certificates verified by default.

    kombu's Redis transport does not verify the server certificate of a ``rediss://``
    broker unless told to, so the Celery config passes these as ``broker_use_ssl``:
    ``ssl_cert_reqs`` (``required`` unless the URL says ``optional`` or ``none``),
    ``ssl_ca_certs``, ``ssl_certfile`` and ``ssl_keyfile``.
    """
    import ssl

    query = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
    reqs = query.get("ssl_cert_reqs", "required").lower().removeprefix("cert_")
    modes = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
    if reqs not in modes:
        raise ConfigError(f"ssl_cert_reqs={reqs!r} in {redact(url)!r} is invalid; accepted: "
                          "required, optional, none")
    options: dict[str, object] = {"ssl_cert_reqs": modes[reqs]}
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if name in query:
            options[name] = query[name]
    return options


def kombu_sentinel(url: str) -> tuple[str, str]:
    """Our ``sentinel://h1:p1,h2:p2/db?master=NAME`` as kombu's URL and master name.

    kombu spells a Sentinel broker ``sentinel://h1:p1/db;sentinel://h2:p2/db`` with the
    master name in ``broker_transport_options``; one URL format for both the broker and
    the store is easier to get right, so the Celery config translates.
    """
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    prefix = f"{auth}@" if auth else ""
    db = parts.path or "/0"
    urls = ";".join(f"sentinel://{prefix}{host}{db}" for host in hosts.split(","))
    return urls, parse_qs(parts.query)["master"][-1]


def is_cluster(url: str) -> bool:
    """True when the URL says ``cluster=true``: the store is a Redis Cluster."""
    values = parse_qs(urlsplit(url).query).get("cluster") or ["false"]
    return values[-1].lower() in ("true", "1", "yes")


def without_param(url: str, name: str) -> str:
    """``url`` without the query parameter ``name`` (for clients that would reject it)."""
    from urllib.parse import urlencode

    parts = urlsplit(url)
    query = [(k, v) for k, vs in parse_qs(parts.query).items() for v in vs if k != name]
    return parts._replace(query=urlencode(query)).geturl()
