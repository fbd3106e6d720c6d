"""Validate Redis and broker URLs, and hide their passwords.

Accepted store URLs: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS,
certificates verified unless ``ssl_cert_reqs=none`` is in the query) and
``sentinel://[[user]:password@]host:port[,host:port...]/db?master=NAME``. A broker URL may
also be ``amqp://``/``amqps://``/``pyamqp://`` (RabbitMQ), which is kombu's business.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

from worker.errors import ConfigError

REDIS_SCHEMES = ("redis", "rediss", "sentinel")
"""Schemes the heartbeat store (and the reader) accept."""

BROKER_SCHEMES = (*REDIS_SCHEMES, "amqp", "amqps", "pyamqp")
"""Schemes accepted for ``CELERY_BROKER_URL``."""

_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]*)(?=@)")


def redact(text: str) -> str:
    """Replace every password in URLs found in ``text`` with ``***``.

    Used on every URL and every error message before it reaches a log line, the CLI or an
    HTTP response, so a password can't leak through an exception from a client library.
    """
    return _PASSWORD_IN_URL.sub(lambda m: m.group("head") + "***", text)


def _port_ok(netloc_part: str, source: str, url: str) -> None:
    host, sep, port = netloc_part.rpartition(":")
    if not sep or port == "":
        if sep:
            raise ConfigError(f"{source} {redact(url)!r} has an empty port; accepted: 1-65535")
        host = netloc_part
    elif not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{source} {redact(url)!r} has a bad port {port!r}; accepted: 1-65535")
    if not host.strip("[]"):
        raise ConfigError(f"{source} {redact(url)!r} has no host; e.g. redis://127.0.0.1:6379/0")


def validate_url(url: str, *, source: str, schemes: tuple[str, ...] = REDIS_SCHEMES) -> str:
    """Return ``url`` unchanged if it is usable, else raise a one-line ``ConfigError``.

    ``source`` names where the URL came from (an environment variable or a flag), so the
    error line tells the user what to fix.
    """
    accepted = ", ".join(s + "://" for s in schemes)
    try:
        parts: SplitResult = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(
            f"{source} {redact(url)!r} is not a URL ({exc}); accepted: {accepted}"
        ) from None
    if parts.scheme not in schemes:
        raise ConfigError(
            f"{source} has unknown scheme {parts.scheme + '://' if parts.scheme else 'none'} "
            f"in {redact(url)!r}; accepted: {accepted}"
        )
    hostpart = parts.netloc.rpartition("@")[2]
    if not hostpart:
        raise ConfigError(f"{source} {redact(url)!r} has no host; e.g. redis://127.0.0.1:6379/0")
    for one in hostpart.split(",") if parts.scheme == "sentinel" else [hostpart]:
        _port_ok(one, source, url)
    if parts.scheme in REDIS_SCHEMES:
        db = parts.path.strip("/")
        if db and not (db.isdigit() and int(db) < 1_000_000):
            raise ConfigError(
                f"{source} {redact(url)!r} has a bad database {db!r}; accepted: a number, e.g. /0"
            )
    if parts.scheme == "sentinel" and "master=" not in parts.query:
        raise ConfigError(
            f"{source} {redact(url)!r} names no master; "
            "accepted: sentinel://host:26379,host2:26379/0?master=mymaster"
        )
    return url


def tls_options(url: str) -> dict[str, object]:
    """TLS settings for kombu from a ``rediss://`` URL's query: certificates verified by default.

    kombu's Redis transport does not verify the server certificate of a ``rediss://``
    broker unless told to, so the Celery config passes these as ``broker_use_ssl``:
    ``ssl_cert_reqs`` (``required`` unless the URL says ``optional`` or ``none``),
    ``ssl_ca_certs``, ``ssl_certfile`` and ``ssl_keyfile``.
    """
    import ssl
    from urllib.parse import parse_qs

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
    from urllib.parse import parse_qs

    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    prefix = f"{auth}@" if auth else ""
    db = parts.path or "/0"
    urls = ";".join(f"sentinel://{prefix}{host}{db}" for host in hosts.split(","))
    return urls, parse_qs(parts.query)["master"][-1]
