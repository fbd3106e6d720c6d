"""Every URL rule, by its whole refusal line: schemes, hosts and ports at their bounds,
databases, Sentinel masters, cluster flags. A URL accepted comes back as written (the
scheme in lower case)."""

from __future__ import annotations

import pytest

from worker.core.errors import ConfigError
from worker.core.urls import BROKER_SCHEMES, validate_url

HOST_RULE = ("accepted: a host name (letters, digits, '-', '.'; at most 63 characters a label, "
             "253 in all) or an IP address")
PORT_RULE = ("has a bad port; accepted: 1-65535 (a password holding '/', '?', '#' or '@' must "
             "be percent-encoded, e.g. '/' as %2F)")
SCHEMES = "accepted: redis://, rediss://, sentinel://"
SPACE_RULE = ("--redis holds a space or a control character (not shown); accepted: a URL "
              "without them (percent-encode them in a password, a space as %20)")
CLUSTER_RULE = ": a Redis Cluster has only database 0 and no Sentinel; e.g. " \
               "redis://node1:7000/0?cluster=true"
H253 = ".".join(["a" * 63] * 3) + "." + "b" * 61

CASES: list[tuple[str, str | None]] = [
    ("redis://h:6379/0?cluster=1", None), ("redis://h:6379/0?cluster=0", None),
    ("redis://h:1/0?cluster=yes", None), ("redis://h:1/0?cluster=no", None),
    ("redis://h:1/0?cluster=YES", None), ("redis://h:1?cluster=true", None),
    ("redis://h:1/?cluster=true", None), ("redis://h:1/999999", None),
    ("redis://[::1]/0", None), ("redis://[::1]:6379/0", None), ("redis://h:65535/0", None),
    ("redis://h:1/0", None), ("redis://h.example./0", None), (f"redis://{H253}/0", None),
    ("sentinel://s:1,t:2/0?master=MyMaster", None), ("redis://X:1/0", None),
    ("redis://h:1/X", "--redis 'redis://h:1/X' has a bad database 'X'; accepted: a number, "
                      "e.g. /0"),
    ("redis://h!:1/0", f"--redis has a bad host 'h!'; {HOST_RULE}"),
    # A space or a control character, anywhere: refused, and nothing of the URL shown (a
    # password with an unencoded space was accepted, and redact() ended the URL there).
    ("redis:// :1/0", SPACE_RULE), ("redis://:pa ss@h:1/0", SPACE_RULE),
    ("redis://:pa\tss@h:1/0", SPACE_RULE), ("redis://:pass@h:1/0\n", SPACE_RULE),
    ("redis://:p\x00@h:1/0", SPACE_RULE), ("redis://:p\x1f@h:1/0", SPACE_RULE),
    ("redis://:p\x7f@h:1/0", SPACE_RULE), ("redis://:p\x85@h:1/0", SPACE_RULE),
    ("redis://:p\xa0@h:1/0", SPACE_RULE), ("redis://h:1/0?ssl_ca_certs=/a b", SPACE_RULE),
    ("redis://:p!~%20@h:1/0", None), ("redis://:pé@h:1/0", None),
    ("redis://h:1/1000000",
     "--redis 'redis://h:1/1000000' has a bad database '1000000'; accepted: a number, e.g. /0"),
    ("redis://h:1/x", "--redis 'redis://h:1/x' has a bad database 'x'; accepted: a number, "
                      "e.g. /0"),
    ("redis://h,x:1/0", f"--redis has a bad host 'h,x'; {HOST_RULE}"),  # commas: Sentinel's
    ("redis://h:65536/0", f"--redis 'redis://h:65536/0' {PORT_RULE}"),
    ("redis://h:0/0", f"--redis 'redis://h:0/0' {PORT_RULE}"),
    ("redis://h:/0", "--redis 'redis://h:/0' has an empty port; accepted: 1-65535"),
    (f"redis://{H253}b/0", f"--redis has a bad host '{'a' * 40}...'; {HOST_RULE}"),
    ("redis://.h/0", f"--redis has a bad host '.h'; {HOST_RULE}"),
    (f"redis://{'é' * 40}/0", f"--redis has a bad host '{'é' * 40}'; {HOST_RULE}"),
    (f"redis://{'é' * 41}/0", f"--redis has a bad host '{'é' * 40}...'; {HOST_RULE}"),
    ("redis://:pw@/0", "--redis 'redis://:***@/0' has no host; e.g. redis://127.0.0.1:6379/0"),
    ("redis://:6379/0", "--redis 'redis://:6379/0' has no host; e.g. redis://127.0.0.1:6379/0"),
    ("redis://:pw@[::1/0",
     f"--redis 'redis://:***@[::1/0' is not a URL (Invalid IPv6 URL); {SCHEMES}"),
    ("//h:1/0", f"--redis has unknown scheme none in '//h:1/0'; {SCHEMES}"),
    ("sentinel://:pw@s:1/0?master=a*b",
     "--redis 'sentinel://:***@s:1/0?master=a*b' names no valid master; accepted: "
     "sentinel://host:26379,host2:26379/0?master=mymaster"),
    ("redis://h:1/0?cluster=maybe", "--redis 'redis://h:1/0?cluster=maybe' has "
                                    "cluster='maybe'; accepted: cluster=true or cluster=false"),
    ("sentinel://s:1/0?master=m&cluster=true",
     f"--redis 'sentinel://s:1/0?master=m&cluster=true'{CLUSTER_RULE}"),
    ("redis://:pw@h:1/1?cluster=true", f"--redis 'redis://:***@h:1/1?cluster=true'{CLUSTER_RULE}"),
]


@pytest.mark.parametrize(("url", "refusal"), CASES)
def test_each_url_rule(url: str, refusal: str | None) -> None:
    if refusal is None:
        assert validate_url(url, source="--redis") == url
        return
    with pytest.raises(ConfigError) as info:
        validate_url(url, source="--redis")
    assert str(info.value) == refusal


@pytest.mark.parametrize("url", ["redis://h:[::1]/0", "redis://a[::1]/0",
                                 "redis://[::1]:[1]/0"])
def test_brackets_outside_a_host_are_refused(url: str) -> None:
    """As a bad port, or, by a Python whose urlsplit checks brackets (3.11.12 and later),
    as not a URL: never as a host."""
    with pytest.raises(ConfigError) as info:
        validate_url(url, source="--redis")
    assert str(info.value) in (f"--redis {url!r} {PORT_RULE}",
                               f"--redis {url!r} is not a URL (Invalid IPv6 URL); {SCHEMES}")


def test_a_cluster_broker_url_names_database_0_whatever_its_scheme() -> None:
    url = "amqp://guest@rabbit/X?cluster=true"
    with pytest.raises(ConfigError) as info:
        validate_url(url, source="CELERY_BROKER_URL", schemes=BROKER_SCHEMES)
    assert str(info.value) == f"CELERY_BROKER_URL {url!r}{CLUSTER_RULE}"


def test_the_scheme_is_lower_cased_and_the_rest_kept() -> None:
    assert validate_url("REDIS://:PW@H:1/0", source="x") == "redis://:PW@H:1/0"
