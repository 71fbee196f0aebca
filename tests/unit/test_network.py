"""stages.lib.core.network on this machine's loopback: a listening socket is reachable, a closed port and a name
that does not resolve are not; proxies route the probe.

How long the probe may take is bounded by construction (a resolver thread joined with a timeout, socket
timeouts that share one budget): these tests check those bounds as the probe sets them (the timeouts it gives
each connection, a lookup left behind unanswered), not with wall-clock limits that a loaded machine breaks."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest

from stages.lib.core import network
from stages.lib.core.network import NetworkUnreachable, require_reachable, route, unreachable_reason

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
# RFC 6761: names under .invalid never resolve.
NO_SUCH_HOST = "no-such-host.invalid"


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
        time.sleep(0.1)  # the kernel settles the pending handshakes (not a limit on anything under test)
        yield port
        for client in pending:
            client.close()


def closed_port() -> int:
    """A loopback port just bound and released: nothing listens there, so a connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RecordedSocket(socket.socket):
    """A real socket that records the timeout the probe gives each connection attempt."""

    timeouts: ClassVar[list[float | None]] = []

    def settimeout(self, value: float | None) -> None:
        RecordedSocket.timeouts.append(value)
        super().settimeout(value)


@pytest.fixture
def connection_timeouts(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """The timeouts the probe sets on its connections, in order (the sockets themselves are real)."""
    monkeypatch.setattr(RecordedSocket, "timeouts", [])
    monkeypatch.setattr(network.socket, "socket", RecordedSocket)
    return RecordedSocket.timeouts


def test_a_listening_socket_is_reachable(listening_port: int, connection_timeouts: list[float | None]) -> None:
    assert unreachable_reason(f"http://127.0.0.1:{listening_port}/file.tgz") is None
    require_reachable([f"https://127.0.0.1:{listening_port}/weights.h5"])  # does not raise
    assert len(connection_timeouts) == 2
    assert all(0 < timeout <= network.CONNECT_TIMEOUT_S for timeout in connection_timeouts)


def test_a_closed_port_is_unreachable(connection_timeouts: list[float | None]) -> None:
    port = closed_port()
    reason = unreachable_reason(f"http://127.0.0.1:{port}/file.tgz")
    assert reason is not None
    assert reason.startswith(f"cannot reach 127.0.0.1:{port}: no connection (ConnectionRefusedError: "), reason
    with pytest.raises(NetworkUnreachable, match="Connection refused"):
        require_reachable([f"http://127.0.0.1:{port}/file.tgz"])
    assert all(0 < timeout <= network.CONNECT_TIMEOUT_S for timeout in connection_timeouts)


def test_a_name_that_does_not_resolve_is_unreachable(connection_timeouts: list[float | None]) -> None:
    reason = unreachable_reason(f"https://{NO_SUCH_HOST}/weights.h5")
    assert reason is not None
    assert reason.startswith(f"cannot reach {NO_SUCH_HOST}:443: the name '{NO_SUCH_HOST}' does not resolve ("), reason
    assert connection_timeouts == []  # no connection was tried


def test_a_resolver_that_does_not_answer_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """getaddrinfo has no timeout of its own: a hanging lookup is abandoned after the probe's limit, while it
    still hangs (the probe returned without it), not waited for."""
    asked, release = threading.Event(), threading.Event()

    def hang(*args: object, **kwargs: object) -> None:
        asked.set()
        release.wait()
        raise socket.gaierror("released by the test")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    try:
        reason = network.unreachable_reason("http://example.org/", resolve_timeout=0.5)
        assert asked.is_set() and not release.is_set()  # the lookup was made and is still unanswered
        assert reason is not None and "no answer from the name resolver in 0.5 s" in reason, reason
    finally:
        release.set()


def loopback_answers(*ports: int) -> list[tuple]:
    return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port)) for port in ports]


def test_a_dead_address_leaves_time_for_the_next(
    monkeypatch: pytest.MonkeyPatch, dead_port: int, listening_port: int, connection_timeouts: list[float | None]
) -> None:
    """A host whose first address drops the handshake (a dead IPv6 route, say) is still found through the next:
    the dead one gets at most its share of the budget (half, of two), the live one what is left of it."""
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: loopback_answers(dead_port, listening_port))
    assert unreachable_reason("http://two-addresses.example/", connect_timeout=2) is None
    dead, live = connection_timeouts
    assert 0 < dead <= 2 / 2 and 0 < live <= 2 - dead
    connection_timeouts.clear()
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: loopback_answers(dead_port))
    reason = unreachable_reason("http://one-dead-address.example/", connect_timeout=1)
    assert reason is not None and "no connection (TimeoutError: " in reason, reason
    (dead,) = connection_timeouts
    assert 0 < dead <= 1  # the whole budget, no more: the probe gave up on the dead address when it ran out


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
    reason = unreachable_reason("http://127.0.0.1:1/f.tgz")
    assert reason is not None and f"the name '{NO_SUCH_HOST}' does not resolve" in reason, reason
