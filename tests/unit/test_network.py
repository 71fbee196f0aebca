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
