"""The real download paths, run as far as they go on a machine without internet.

What a new user's first `dvc repro` runs — tensorflow-datasets' tf_flowers builder and Keras' ImageNet
weights download — is not mocked here. Each runs through our stage until it opens a connection, and the
test asserts that what stops it is the network: not an import that the requirement files forgot (tfds
imports `importlib_resources` lazily, before any network access), a missing attribute or our own code.
The network is made to fail at once: every HTTP(S) connection goes through a proxy on which nothing
listens (the operating system refuses it), or through a proxy whose name does not resolve. Nothing else is
changed: the stages' own probe (stages.lib.core.network) must stop them in seconds, where tfds alone retries a
failed download 10 times with back-off (3 min 24 s).

One more test goes past the network boundary: tfds' DownloadManager.download (the fetch itself) returns
a small local flower_photos.tgz, and the rest of the real builder (archive iteration, the builder's own
example generation and encoding, writing and reading its shards) and our export run on it.

The tests time how long the error takes (OFFLINE_ERROR_WITHIN_S): marked `serial`, .ci/run runs them alone
(so they build none of tests/e2e/conftest.py's shared projects: that pass is a session of its own).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from stages.lib.core import network
from toolkit.project import PROJECT_ROOT, make_project, run, tool_env, write_params
from toolkit.synthetic import make_flower_archive

pytestmark = pytest.mark.serial

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
# Import failures that would mean a requirement is missing or our code is broken before the network.
NOT_THE_NETWORK = ("ModuleNotFoundError", "ImportError", "AttributeError", "NameError", "TypeError", "Traceback")
# The bound on the time to the error offline (Python, TensorFlow's import and the probe included).
OFFLINE_ERROR_WITHIN_S = 15
# A proxy name that never resolves (RFC 6761), for a network without name resolution.
UNRESOLVABLE_PROXY = "http://proxy.invalid:3128"
TFDS_OFFLINE_ERROR = "download: error: data.source = tfds: downloading tf_flowers:3.0.1 failed (NetworkUnreachable: "
TFDS_OFFLINE_FIX = "Offline, set data.source to a local flower_photos folder or .tgz"


def refused_address() -> str:
    """An http:// address on this machine where nothing listens: a port just bound and released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def offline_env(tmp_path: Path, proxy: str | None = None) -> dict[str, str]:
    """The test environment with every connection refused (or through `proxy`, one that cannot be reached)
    and an empty Keras cache (no stored weights)."""
    env = tool_env()
    address = proxy or refused_address()
    env.update(dict.fromkeys(PROXY_VARIABLES, address))
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    env["KERAS_HOME"] = str(tmp_path / "keras_home")
    return env


def last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.fixture
def tfds_project(tmp_path: Path, flower_folder: Path) -> Path:
    repo = make_project(tmp_path / "project", flower_folder)
    write_params(repo, {"data": {"source": "tfds"}})
    return repo


def timed_run(repo: Path, *args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = run(repo, *args, check=False, env=env)
    elapsed = time.monotonic() - started
    print(f"{' '.join(args[1:])}: {elapsed:.1f} s to the error offline")  # shown with pytest -s
    return result, elapsed


@pytest.mark.parametrize("proxy", [None, UNRESOLVABLE_PROXY], ids=["refused", "unresolvable"])
def test_the_tf_flowers_download_stops_at_the_network(tfds_project: Path, tmp_path: Path, proxy: str | None) -> None:
    env = offline_env(tmp_path, proxy)
    result, elapsed = timed_run(tfds_project, sys.executable, "-m", "stages.download", env=env)
    line = last_line(result.stderr)
    assert result.returncode == 2, result.stderr[-3000:]
    assert line.startswith(TFDS_OFFLINE_ERROR + "cannot reach download.tensorflow.org through the proxy "), line
    cause = "no connection (ConnectionRefusedError: " if proxy is None else "'proxy.invalid' does not resolve"
    assert cause in line, line
    assert TFDS_OFFLINE_FIX in line
    assert elapsed < OFFLINE_ERROR_WITHIN_S, f"{elapsed:.1f} s to the error"
    assert not any(marker in result.stderr for marker in NOT_THE_NETWORK), result.stderr[-3000:]
    assert not (tfds_project / "data" / "raw").exists()  # nothing half-written for DVC to cache


def test_dvc_repro_with_the_defaults_fails_fast_offline(tfds_project: Path, tmp_path: Path) -> None:
    """A new user's first command, with the committed params.yaml untouched (data.source: tfds)."""
    shutil.copy(PROJECT_ROOT / "params.yaml", tfds_project / "params.yaml")
    result, elapsed = timed_run(tfds_project, sys.executable, "-m", "dvc", "repro", env=offline_env(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith(TFDS_OFFLINE_ERROR)]
    assert len(errors) == 1 and TFDS_OFFLINE_FIX in errors[0], output[-3000:]
    assert elapsed < OFFLINE_ERROR_WITHIN_S, f"{elapsed:.1f} s to the error"
    assert not any(marker in output for marker in NOT_THE_NETWORK), output[-3000:]
    assert not (tfds_project / "data" / "raw").exists()


@pytest.mark.parametrize("proxy", [None, UNRESOLVABLE_PROXY], ids=["refused", "unresolvable"])
def test_the_imagenet_weights_download_stops_at_the_network(project: Path, tmp_path: Path, proxy: str | None) -> None:
    run(project, sys.executable, "-m", "stages.download")
    run(project, sys.executable, "-m", "stages.subsample")
    write_params(project, {"model": {"weights": "imagenet"}})
    env = offline_env(tmp_path, proxy)
    result, elapsed = timed_run(project, sys.executable, "-m", "stages.embed", env=env)
    line = last_line(result.stderr)
    assert result.returncode == 2, result.stderr[-3000:]
    assert line.startswith(
        "embed: error: model.weights = imagenet: could not get the ImageNet weights (NetworkUnreachable: "
        "cannot reach storage.googleapis.com through the proxy "
    ), line
    assert ("Connection refused" if proxy is None else "'proxy.invalid' does not resolve") in line, line
    assert elapsed < OFFLINE_ERROR_WITHIN_S, f"{elapsed:.1f} s to the error"
    assert "Offline, place resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 in ~/.keras/models/" in line
    assert not any(marker in result.stderr for marker in NOT_THE_NETWORK), result.stderr[-3000:]
    assert not (project / "data" / "features").exists()


def test_the_real_tf_flowers_builder_exports_a_local_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the network: the real builder prepares a small archive as it would tf_flowers' own."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from stages.lib.data.fetch import fetch

    archive = make_flower_archive(tmp_path / "served" / "flower_photos.tgz", per_class=3, size=24)
    fetched = []

    def download(self, url_or_urls):  # the one call that would go to the internet
        fetched.append(url_or_urls)
        return archive

    monkeypatch.setattr(tfds.download.DownloadManager, "download", download)
    probed = []

    def reachable(url: str) -> None:  # the probe's connection, which would go to the internet too
        probed.append(url)

    monkeypatch.setattr(network, "unreachable_reason", reachable)
    monkeypatch.chdir(tmp_path)  # tfds' download cache is data/.tfds below the project root
    target = tmp_path / "raw"
    target.mkdir()
    count, beside = fetch("tfds", target)

    assert fetched == ["http://download.tensorflow.org/example_images/flower_photos.tgz"]
    assert probed == fetched  # the probe looked for the host that tfds downloads from
    assert (count, beside) == (15, ())
    source = archive.parent / "flower_photos"
    expected = Counter((p.parent.name, p.read_bytes()) for p in source.glob("*/*.jpg"))
    exported = Counter((p.parent.name, p.read_bytes()) for p in target.glob("*/*"))
    assert exported == expected  # every image under its class, the archive's own bytes
