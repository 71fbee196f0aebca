"""stages.lib.network on this machine's loopback: a listening socket is reachable, a closed port and a name
that does not resolve are not, each found out within the probe's time limits; proxies route the probe."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from stages.lib import network
from stages.lib.network import NetworkUnreachable, require_reachable, route, unreachable_reason

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
# RFC 6761: names under .invalid never resolve.
NO_SUCH_HOST = "no-such-host.invalid"
# The probe's own limits plus slack for a loaded machine; offline it must not take tfds' minutes.
TIME_LIMIT_S = network.RESOLVE_TIMEOUT_S + network.CONNECT_TIMEOUT_S + 2


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A loopback port that drops connection attempts, as a dead route does: a listening socket whose backlog
    (0 on Linux: one pending connection) is full and never accepted, so the kernel ignores further SYNs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        pending = [socket.socket() for _ in range(3)]
        for client in pending:
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
        time.sleep(0.1)
        yield port
        for client in pending:
            client.close()


def closed_port() -> int:
    """A loopback port just bound and released: nothing listens there, so a connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def timed(url: str) -> tuple[str | None, float]:
    started = time.monotonic()
    reason = unreachable_reason(url)
    return reason, time.monotonic() - started


def test_a_listening_socket_is_reachable(listening_port: int) -> None:
    reason, elapsed = timed(f"http://127.0.0.1:{listening_port}/file.tgz")
    assert reason is None
    assert elapsed < TIME_LIMIT_S
    require_reachable([f"https://127.0.0.1:{listening_port}/weights.h5"])  # does not raise


def test_a_closed_port_is_unreachable() -> None:
    port = closed_port()
    reason, elapsed = timed(f"http://127.0.0.1:{port}/file.tgz")
    assert reason is not None
    assert reason.startswith(f"cannot reach 127.0.0.1:{port}: no connection (ConnectionRefusedError: "), reason
    assert elapsed < TIME_LIMIT_S
    with pytest.raises(NetworkUnreachable, match="Connection refused"):
        require_reachable([f"http://127.0.0.1:{port}/file.tgz"])


def test_a_name_that_does_not_resolve_is_unreachable() -> None:
    reason, elapsed = timed(f"https://{NO_SUCH_HOST}/weights.h5")
    assert reason is not None
    assert reason.startswith(f"cannot reach {NO_SUCH_HOST}:443: the name '{NO_SUCH_HOST}' does not resolve ("), reason
    assert elapsed < TIME_LIMIT_S


def test_a_resolver_that_does_not_answer_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """getaddrinfo has no timeout of its own: a hanging lookup is abandoned after the probe's limit."""

    def hang(*args: object, **kwargs: object) -> None:
        time.sleep(30)

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    started = time.monotonic()
    reason = network.unreachable_reason("http://example.org/", resolve_timeout=0.5)
    assert time.monotonic() - started < 2
    assert reason is not None and "no answer from the name resolver in 0.5 s" in reason, reason


def loopback_answers(*ports: int) -> list[tuple]:
    return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port)) for port in ports]


def test_a_dead_address_leaves_time_for_the_next(
    monkeypatch: pytest.MonkeyPatch, dead_port: int, listening_port: int
) -> None:
    """A host whose first address drops the handshake (a dead IPv6 route, say) is still found through the next."""
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: loopback_answers(dead_port, listening_port))
    started = time.monotonic()
    assert unreachable_reason("http://two-addresses.example/", connect_timeout=2) is None
    assert 0.9 < time.monotonic() - started < 2  # half the budget went to the dead one, then the live one
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: loopback_answers(dead_port))
    started = time.monotonic()
    reason = unreachable_reason("http://one-dead-address.example/", connect_timeout=1)
    assert time.monotonic() - started < 2
    assert reason is not None and "no connection (TimeoutError: " in reason, reason


def test_addresses_alternate_families_once_each() -> None:
    def answer(family: socket.AddressFamily, host: str) -> tuple:
        return (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, 443))

    v6 = [answer(socket.AF_INET6, f"2001:db8::{i}") for i in range(3)]
    v4 = [answer(socket.AF_INET, f"192.0.2.{i}") for i in range(2)]
    assert network.interleaved([*v6, v6[0], *v4]) == [v6[0], v4[0], v6[1], v4[1]]  # at most 4, no repeats
    assert network.interleaved(v4, most=4) == v4


def test_the_probe_goes_to_the_proxy_the_download_would_use(
    monkeypatch: pytest.MonkeyPatch, listening_port: int
) -> None:
    # The target's name does not resolve, but the download would go through a proxy that listens.
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{listening_port}")
    assert route(f"https://{NO_SUCH_HOST}/w.h5") == (
        "127.0.0.1",
        listening_port,
        f"{NO_SUCH_HOST} through the proxy 127.0.0.1:{listening_port}",
    )
    assert unreachable_reason(f"https://{NO_SUCH_HOST}/w.h5") is None
    # HTTPS_PROXY is not used for http:// URLs; ALL_PROXY is, where no scheme's own proxy is set.
    assert route(f"http://{NO_SUCH_HOST}/f.tgz") == (NO_SUCH_HOST, 80, f"{NO_SUCH_HOST}:80")
    port = closed_port()
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{port}")
    assert route(f"http://{NO_SUCH_HOST}/f.tgz")[:2] == ("127.0.0.1", port)
    reason = unreachable_reason(f"http://{NO_SUCH_HOST}/f.tgz")
    assert reason is not None and reason.startswith(f"cannot reach {NO_SUCH_HOST} through the proxy 127.0.0.1:{port}")
    # NO_PROXY: that host is reached directly.
    monkeypatch.setenv("NO_PROXY", NO_SUCH_HOST)
    assert route(f"https://{NO_SUCH_HOST}/w.h5") == (NO_SUCH_HOST, 443, f"{NO_SUCH_HOST}:443")


def test_a_proxy_whose_name_does_not_resolve_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://{NO_SUCH_HOST}:3128")
    reason, elapsed = timed("http://127.0.0.1:1/f.tgz")
    assert reason is not None and f"the name '{NO_SUCH_HOST}' does not resolve" in reason, reason
    assert elapsed < TIME_LIMIT_S
