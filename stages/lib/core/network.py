"""Whether the network is there, found out in seconds before a download that would otherwise retry for minutes.

Offline, tensorflow-datasets retries a failed name lookup ten times with back-off (3 min 24 s before the
error). A name that does not resolve, or a refused connection, will not succeed on the ninth try, so a stage
first resolves the download's host and opens a TCP connection to it (or to the proxy the download would go
through: HTTP(S)_PROXY, ALL_PROXY and NO_PROXY, read as requests, which tfds uses, reads them), with short
timeouts.
Only that is checked: on a working network, a transient error still gets the library's own retries.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.request
from collections.abc import Iterable
from itertools import zip_longest
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Per host: a few seconds is generous for a lookup or a handshake on a working network, and short offline.
RESOLVE_TIMEOUT_S = 3.0
CONNECT_TIMEOUT_S = 5.0  # shared by the host's addresses, at most MOST_ADDRESSES of them
MOST_ADDRESSES = 4
# Keras' keras.src.applications.resnet.BASE_WEIGHTS_PATH (tests/unit/tf/test_network_keras.py checks it):
# written out here because importing Keras loads TensorFlow, seconds that the probe is there to save.
KERAS_RESNET_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
DEFAULT_PORTS = {"http": 80, "https": 443, "socks4": 1080, "socks5": 1080, "socks5h": 1080}


class NetworkUnreachable(OSError):
    """A download's host (or its proxy) did not resolve or did not accept a connection."""


def route(url: str) -> tuple[str, int, str]:
    """The host and port a download of url connects to first (its proxy, if one applies) and a name for it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
    proxies = urllib.request.getproxies()  # the environment's proxies; NO_PROXY below
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        proxy_host = proxy_parts.hostname or ""
        proxy_port = proxy_parts.port or DEFAULT_PORTS.get(proxy_parts.scheme, 80)
        return proxy_host, proxy_port, f"{host} through the proxy {proxy_host}:{proxy_port}"
    return host, port, f"{host}:{port}"


def resolve(host: str, port: int, timeout: float) -> list[Any]:
    """getaddrinfo with a time limit (it has none of its own; the resolver's can be 10 s or more)."""
    answer: dict[str, Any] = {}

    def lookup() -> None:
        try:
            answer["addresses"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            answer["error"] = error

    # A daemon thread: a lookup that never answers is left behind, not waited for.
    thread = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    thread.start()
    thread.join(timeout)
    if "error" in answer:
        raise answer["error"]
    if "addresses" not in answer:
        raise TimeoutError(f"no answer from the name resolver in {timeout:g} s")
    return answer["addresses"]


def unreachable_reason(
    url: str, resolve_timeout: float = RESOLVE_TIMEOUT_S, connect_timeout: float = CONNECT_TIMEOUT_S
) -> str | None:
    """Why url's host cannot be reached now (one line), or None once a TCP connection to it opened."""
    host, port, name = route(url)
    try:
        addresses = resolve(host, port, resolve_timeout)
    except OSError as error:
        return f"cannot reach {name}: the name {host!r} does not resolve ({type(error).__name__}: {error})"
    candidates = interleaved(addresses)
    deadline = time.monotonic() + connect_timeout
    error: OSError = TimeoutError(f"no connection in {connect_timeout:g} s")
    for position, (family, kind, protocol, _, address) in enumerate(candidates):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            with socket.socket(family, kind, protocol) as connection:
                # An equal share of what is left: a dead route (say IPv6) must not use up the others' time.
                connection.settimeout(remaining / (len(candidates) - position))
                connection.connect(address)
            return None
        except OSError as failure:
            error = failure
    return f"cannot reach {name}: no connection ({type(error).__name__}: {error})"


def interleaved(addresses: list[Any], most: int = MOST_ADDRESSES) -> list[Any]:
    """getaddrinfo's answers once each, alternating address families (IPv6, IPv4, IPv6, ...) as happy
    eyeballs does, at most `most` of them."""
    by_family: dict[int, list[Any]] = {}
    for address in dict.fromkeys(addresses):
        by_family.setdefault(address[0], []).append(address)
    rounds = zip_longest(*by_family.values())
    return [address for round_ in rounds for address in round_ if address is not None][:most]


def require_reachable(urls: Iterable[str]) -> None:
    """Raise NetworkUnreachable, at once, when the host of any of urls cannot be reached."""
    for url in urls:
        if (reason := unreachable_reason(url)) is not None:
            raise NetworkUnreachable(reason)


def require_tfds_reachable(builder: Any) -> None:
    """Before a tensorflow-datasets builder's download_and_prepare: its hosts reachable, unless the dataset
    is prepared already (download_and_prepare's own test: its folder exists; then tfds reads it from disk).
    The URLs are those of the builder's checksums file, the ones tfds downloads and checks."""
    if not builder.data_path.exists():
        require_reachable(builder.url_infos or ())


def keras_cache_dir() -> Path:
    """Where keras.utils.get_file keeps its downloads: $KERAS_HOME, else ~/.keras (/tmp/.keras where the
    home folder or that folder is read-only), as Keras' config and get_file decide it."""
    if "KERAS_HOME" in os.environ:
        home = Path(os.environ["KERAS_HOME"]).expanduser()
    else:
        base = Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")
        home = base / ".keras"
    if home.exists() and not os.access(home, os.W_OK):  # Keras creates a missing one on import
        home = Path("/tmp/.keras")
    return home


def require_keras_weights_reachable(file_name: str) -> None:
    """Before Keras' ResNet50 fetches its ImageNet weights: their host reachable, unless Keras has the file
    in its cache already (then it loads it from disk, having checked its hash)."""
    if not (keras_cache_dir() / "models" / file_name).is_file():
        require_reachable([f"{KERAS_RESNET_WEIGHTS_URL}{file_name}"])
