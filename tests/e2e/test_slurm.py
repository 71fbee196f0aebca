"""End to end on a real Slurm: a sweep submitted by scripts/slurm/submit.py to a single-node cluster started here.

The cluster is Debian's own Slurm (slurmctld, slurmd) with MUNGE authentication, configured in a temp dir and
run in the foreground by this test, which stops every daemon it started, also when a test fails. The project
is set up as docs/several-machines.md says: its baseline reproduced, committed and pushed to `origin` (a bare
Git repository) and to a DVC remote (a local folder): a copy of tests/e2e/conftest.py's `shared_baseline`.
The sweep is a two-task job array, one noise level each, each task a fresh clone on the node that restores the
shared stages from the remote and runs only its level, then a collect job that writes the report of both
levels.

Skipped where Slurm or MUNGE is not installed (.ci/run installs them with apt-get) or not run as root.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from toolkit.project import (
    ALL_STAGES,
    PER_LEVEL_STAGES,
    PROJECT_ROOT,
    SHARED_STAGES,
    Reproduced,
    Shared,
    copy_shared,
    ran_stages,
    restored_stages,
    run,
    tool_env,
)

pytestmark = pytest.mark.e2e

SUBMIT = PROJECT_ROOT / "scripts/slurm/submit.py"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
PACKAGES = "slurmctld slurmd slurm-client munge"
NODE = "node1"
LEVELS = ("0", "0.5")
BASELINE_NOISE = "0.3"  # params.yaml's noise: what the baseline commit measured
START_TIMEOUT_S, SWEEP_TIMEOUT_S, STOP_TIMEOUT_S = 60, 600, 30


def missing_tools() -> list[str]:
    return [tool for tool in (*DAEMONS, *CLIENTS) if shutil.which(tool) is None]


def free_ports(count: int) -> list[int]:
    """Ports free now, distinct (all held open until each is known)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


SLURM_CONF = """\
ClusterName=sweeptest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
# No cgroups in a container: processes tracked by parent id, no task binding, no accounting.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName={node} NodeHostname={hostname} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class SlurmCluster:
    """munged, slurmctld and slurmd in the foreground, as this process's children, configured in root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**tool_env(), "SLURM_CONF": str(root / "slurm.conf")}
        self.daemons: list[subprocess.Popen] = []

    def start(self) -> None:
        root = self.root
        for folder in ("munge", "state", "spool", "log"):
            (root / folder).mkdir(mode=0o700)
        key = root / "munge/munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        ctld_port, d_port = free_ports(2)
        conf = SLURM_CONF.format(
            root=root,
            ctld_port=ctld_port,
            d_port=d_port,
            node=NODE,
            hostname=socket.gethostname().split(".")[0],
            cpus=os.cpu_count() or 1,
        )
        (root / "slurm.conf").write_text(conf)
        munge = root / "munge"
        self.spawn(
            "munged",
            "--foreground",
            "--force",  # as root, with its files in a temp dir
            f"--key-file={key}",
            f"--socket={munge / 'munge.socket'}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={munge / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        )
        self.wait_for(lambda: (munge / "munge.socket").exists(), "munged's socket")
        self.spawn("slurmctld", "-D", "-i")
        self.wait_for(lambda: self.client("sinfo", check=False).returncode == 0, "slurmctld")
        self.spawn("slurmd", "-D", "-N", NODE)
        self.wait_for(lambda: self.client("sinfo", "-h", "-o", "%T").stdout.strip() == "idle", "the node to be idle")

    def spawn(self, *command: str) -> None:
        with open(self.root / "log" / f"{command[0]}.out", "wb") as log:  # the daemon keeps its own copy
            self.daemons.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def client(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(self.root, *command, check=check, env=self.env)

    def wait_for(self, ready, what: str, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [daemon.args[0] for daemon in self.daemons if daemon.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise AssertionError(f"Slurm did not start: waited for {what}; exited: {dead}\n{self.logs()}")
            time.sleep(0.5)

    def wait_for_jobs(self, timeout: float) -> None:
        """Until the queue is empty; on a timeout the jobs are cancelled and the test fails with the logs."""
        deadline = time.monotonic() + timeout
        while self.client("squeue", "-h", "-o", "%i").stdout.strip():
            if time.monotonic() > deadline:
                queue = self.client("squeue").stdout
                self.client("scancel", "--full", "--user=root", check=False)
                raise AssertionError(f"the sweep did not finish in {timeout} s:\n{queue}\n{self.logs()}")
            time.sleep(2)

    def job_state(self, job_id: str) -> str:
        shown = self.client("scontrol", "-o", "show", "job", job_id).stdout
        return re.search(r"JobState=(\S+)", shown)[1]

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in sorted((self.root / "log").glob("*")))

    def stop(self) -> None:
        """Cancel what still runs, then stop the daemons (TERM, then KILL after STOP_TIMEOUT_S)."""
        if self.daemons and self.daemons[-1].poll() is None:
            self.client("scancel", "--full", "--user=root", check=False)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self.client("squeue", "-h", "-o", "%i", check=False).stdout.strip() and time.monotonic() < deadline:
                time.sleep(0.5)
        for daemon in reversed(self.daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    missing = missing_tools()
    if missing:
        pytest.skip(f"Slurm/MUNGE not installed ({', '.join(missing)} missing): apt-get install {PACKAGES}")
    if os.geteuid() != 0:
        pytest.skip("starting slurmd needs root (.ci/run runs as root)")
    # A short path: MUNGE's socket path must fit a Unix socket address (108 bytes).
    root = Path(tempfile.mkdtemp(prefix="slurm-"))
    slurm = SlurmCluster(root)
    try:
        slurm.start()
        yield slurm
    finally:
        slurm.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Sweep:
    baseline: str  # dvc repro's output
    submitted: str  # submit.py's output
    tasks: dict[str, str]  # noise level -> its task's log
    collect: str  # the collect job's log
    collect_state: str
    reports: Path


@pytest.fixture(scope="module")
def sweep(
    cluster: SlurmCluster,
    tmp_path_factory: pytest.TempPathFactory,
    shared_baseline: Shared,
    reproduced_project: Reproduced,
) -> Sweep:
    root = tmp_path_factory.mktemp("slurm-sweep")
    # docs/several-machines.md, step 1: the baseline reproduced once, shared through origin and the DVC remote
    # (a copy: this module pushes experiments to it).
    project = copy_shared(shared_baseline, root / "shared").project
    baseline = reproduced_project.output

    out = root / "out"
    submitted = run(
        project,
        sys.executable,
        str(SUBMIT),
        "-S",
        f"noise={','.join(LEVELS)}",
        "--cpus-per-task=1",
        "--time=00:20:00",
        f"--workdir={root / 'nodes'}",
        f"--out={out}",
        env=cluster.env,
    ).stdout
    array_id, collect_id = re.search(r"^submitted: array job (\d+) .*, collect job (\d+)$", submitted, re.M).groups()
    cluster.wait_for_jobs(SWEEP_TIMEOUT_S)
    logs = out / "logs"
    tasks = {level: (logs / f"noise-sweep-{array_id}_{i}.out").read_text() for i, level in enumerate(LEVELS)}
    collect = (logs / f"noise-sweep-collect-{collect_id}.out").read_text()
    return Sweep(baseline, submitted, tasks, collect, cluster.job_state(collect_id), out / "reports")


def test_the_submit_script_names_one_experiment_per_level(sweep: Sweep) -> None:
    assert "2 tasks: noise-0, noise-0.5" in sweep.submitted
    assert ran_stages(sweep.baseline) == ALL_STAGES


@pytest.mark.parametrize("level", LEVELS)
def test_each_task_restores_the_shared_stages_and_runs_only_its_level(sweep: Sweep, level: str) -> None:
    log = sweep.tasks[level]
    assert f"experiment noise-{level} (noise={level})" in log
    # The features were not recomputed: embed came from the DVC remote, as did every stage the level leaves alone.
    assert "Running stage 'embed'" not in log
    assert "Pulling data for stage: 'embed'" in log
    assert restored_stages(log) == SHARED_STAGES
    assert ran_stages(log) == PER_LEVEL_STAGES
    assert re.search(rf"Pushed experiment noise-{re.escape(level)} ", log), log


def test_the_collect_job_reports_both_levels_and_the_baseline(sweep: Sweep) -> None:
    assert sweep.collect_state == "COMPLETED", sweep.collect
    assert f"report: sweep of 3 runs at noise 0, {BASELINE_NOISE}, 0.5" in sweep.collect
    text = (sweep.reports / "results.md").read_text()
    (table,) = re.findall(r"^### Accuracy\n\n((?:\|.*\n)+)", text, flags=re.MULTILINE)
    rows = [line.split(" | ") for line in table.strip().splitlines()[2:]]
    expected = [(0.0, "noise-0"), (float(BASELINE_NOISE), "main"), (0.5, "noise-0.5")]
    assert [(float(row[0].strip("| ")), row[-1].strip("| `")) for row in rows] == expected
    assert (sweep.reports / "noise_curve.png").stat().st_size > 0


def test_submit_expands_the_grid_and_passes_the_resources_to_sbatch(tmp_path: Path) -> None:
    """--dry-run: the sbatch commands for a 2 × 2 grid, without a cluster."""
    printed = run(
        PROJECT_ROOT,
        sys.executable,
        str(SUBMIT),
        "-S",
        "noise=0,0.5",
        "-S",
        "train.losses=[bce,l1],[gce]",
        "--gres=gpu:1",
        "--partition=gpu",
        "--max-parallel=2",
        "--origin=/srv/project.git",
        "--rev=HEAD",
        f"--out={tmp_path / 'out'}",
        "--dry-run",
    ).stdout
    array, collect, summary = printed.splitlines()[:3]
    names = ", ".join(f"noise-{noise}-train.losses-{losses}" for noise in ("0", "0.5") for losses in ("bce_l1", "gce"))
    assert f"(4 tasks: {names})" in summary
    assert "--array=0-3%2" in array and "--gres=gpu:1" in array and "--partition=gpu" in array
    assert "--time=02:00:00" in array and "--cpus-per-task=2" in array
    assert "'noise-0.5-train.losses-gce\tnoise=0.5\ttrain.losses=[gce]'" in array  # level.sh's task format
    assert "--dependency=afterok:ARRAY_JOB_ID" in collect and "--gres" not in collect
    assert not (tmp_path / "out").exists()


def test_submit_refuses_an_override_without_values() -> None:
    result = run(PROJECT_ROOT, sys.executable, str(SUBMIT), "-S", "noise", "--dry-run", check=False)
    assert result.returncode != 0
    assert "-S 'noise': give KEY=VALUE or KEY=V1,V2,..." in result.stderr
