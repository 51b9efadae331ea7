"""A single-node Slurm cluster on this machine, to try and test ``hydra/launcher=slurm``.

Debian's ``slurm-wlm`` and ``munge`` (``apt-get install -y slurm-wlm munge``) start in seconds:
munged with its packaged key, then slurmctld and slurmd as root (``SlurmUser=root``), one node
named after this host on 127.0.0.1 with its real CPUs and memory, one partition ``cpu``. The
configuration and state live in one folder; Slurm's commands find it through ``SLURM_CONF``::

    python -m actloss_bench.ops.cluster start     # prints: export SLURM_CONF=...
    python -m actloss_bench.ops.cluster stop

Only loopback: slurmctld and slurmd listen on their ports, but the node's address is 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_DIR = Path("/tmp/actloss-slurm")
PARTITION = "cpu"
DAEMONS = ("slurmctld", "slurmd")


class ClusterError(RuntimeError):
    """The cluster cannot start, in one line."""


def missing_programs() -> list:
    return [p for p in ("munged", *DAEMONS, "sbatch", "sinfo") if shutil.which(p) is None
            and not Path("/usr/sbin", p).exists()]


def _memory_mb() -> int:
    with open("/proc/meminfo") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return kb // 1024 - 1024  # leave the system a GB


def slurm_conf(folder: Path, ctld_port: int, slurmd_port: int) -> str:
    host = socket.gethostname()
    return "\n".join([
        "ClusterName=actloss",
        f"SlurmctldHost={host}(127.0.0.1)",
        "SlurmUser=root", "SlurmdUser=root",
        f"SlurmctldPort={ctld_port}", f"SlurmdPort={slurmd_port}",
        "AuthType=auth/munge", "CryptoType=crypto/munge",
        f"StateSaveLocation={folder}/state", f"SlurmdSpoolDir={folder}/spool",
        f"SlurmctldPidFile={folder}/slurmctld.pid", f"SlurmdPidFile={folder}/slurmd.pid",
        f"SlurmctldLogFile={folder}/slurmctld.log", f"SlurmdLogFile={folder}/slurmd.log",
        # No cgroups: a container has none to hand out; processes are tracked by parentage.
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "SchedulerType=sched/backfill", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "ReturnToService=2", "MpiDefault=none",
        "KillWait=5", "InactiveLimit=0", "SlurmdTimeout=30",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} "
        f"RealMemory={_memory_mb()} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ""])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(folder: Path = DEFAULT_DIR) -> dict:
    return {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}


def _munge_running() -> bool:
    return subprocess.run(["munge", "-n"], capture_output=True).returncode == 0


def start(folder: Path = DEFAULT_DIR, timeout_s: float = 60.0) -> dict:
    """Start munged (unless running), slurmctld and slurmd; wait until the node is idle.
    Returns the environment Slurm's commands need."""
    missing = missing_programs()
    if missing:
        raise ClusterError(f"Slurm is not installed ({', '.join(missing)} missing); on Debian: "
                           "apt-get install -y slurm-wlm munge")
    if os.geteuid() != 0:
        raise ClusterError("the single-node cluster runs its daemons as root (SlurmUser=root)")
    stop(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        (folder / sub).mkdir(exist_ok=True)
    (folder / "slurm.conf").write_text(slurm_conf(folder, _free_port(), _free_port()))
    if not _munge_running():
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
    conf = str(folder / "slurm.conf")
    subprocess.run(["slurmctld", "-f", conf, "-c"], check=True)  # -c: no saved state
    subprocess.run(["slurmd", "-f", conf], check=True)
    environment = env(folder)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], env=environment,
                                capture_output=True, text=True).stdout.split()
        if states and all(s == "idle" for s in states):
            return environment
        time.sleep(0.5)
    raise ClusterError(f"the Slurm node did not come up within {timeout_s:.0f} s "
                       f"(see {folder}/slurmctld.log and slurmd.log)")


def stop(folder: Path = DEFAULT_DIR) -> None:
    """Stop this folder's slurmd and slurmctld (munged stays: other users may need it)."""
    for daemon in reversed(DAEMONS):
        pidfile = folder / f"{daemon}.pid"
        try:
            pid = int(pidfile.read_text())
            os.kill(pid, 15)
        except (OSError, ValueError):
            continue
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.1)
        pidfile.unlink(missing_ok=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m actloss_bench.ops.cluster")
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            start(args.dir)
            print(f"export SLURM_CONF={args.dir / 'slurm.conf'}")
        else:
            stop(args.dir)
    except ClusterError as e:
        sys.exit(f"actloss-cluster: error: {e}")


if __name__ == "__main__":
    main()
