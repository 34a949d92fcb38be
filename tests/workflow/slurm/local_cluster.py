"""A real single-node SLURM cluster on localhost for the test suite (Debian packages, root).

munged + MariaDB + slurmdbd (so `sacct`, the executor plugin's default status command, works)
+ slurmctld + slurmd with fake GPUs: each "device file" is a symlink to /dev/null, which is all
slurmd needs to hand out `gres/gpu` and set CUDA_VISIBLE_DEVICES per job. Everything lives
under one base folder; `down()` stops exactly the daemons `up()` started, by PID.

    python tests/workflow/slurm/local_cluster.py up|down [--base /tmp/ftgen-slurm]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge", "slurmdbd", "mariadb-server"]
BINARIES = ["slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "mariadb-install-db", "sbatch", "sacct"]
ETC_SLURM = Path("/etc/slurm")


def missing_requirements() -> str | None:
    """Why this machine cannot host the cluster, or None."""
    if os.geteuid() != 0:
        return "needs root (slurmd, munged)"
    missing = [b for b in BINARIES if not shutil.which(b) and not Path("/usr/sbin", b).exists()]
    if missing:
        return f"missing {', '.join(missing)}: apt-get install {' '.join(PACKAGES)}"
    return None


def _wait(what: str, check, timeout: float = 30.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"local SLURM: {what} did not happen within {timeout:.0f} s")


def _ok(*cmd: str) -> bool:
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class LocalSlurm:
    def __init__(self, base: str | Path, gpus: int = 8, db_port: int = 3307, partition: str = "debug"):
        self.base = Path(base)
        self.gpus, self.db_port, self.partition = gpus, db_port, partition
        self.etc, self.run, self.log, self.state = (self.base / d for d in ("etc", "run", "log", "state"))
        self.started: list[tuple[str, int]] = []  # (daemon, pid), in start order
        self.linked: list[Path] = []

    # ------------------------------------------------------------------ configuration
    def _write_configs(self) -> None:
        for d in (self.etc, self.run, self.log, self.state / "ctld", self.state / "d", self.base / "dev"):
            d.mkdir(parents=True, exist_ok=True)
        for i in range(self.gpus):
            dev = self.base / "dev" / f"nvidia{i}"
            if not dev.is_symlink():
                dev.symlink_to("/dev/null")
        cpus = os.cpu_count() or 2
        mem = int(
            int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))) / 1024 * 0.8
        )
        (self.etc / "slurm.conf").write_text(f"""# written by tests/workflow/slurm/local_cluster.py
ClusterName=ftgentest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={self.state}/ctld
SlurmdSpoolDir={self.state}/d
SlurmctldPidFile={self.run}/slurmctld.pid
SlurmdPidFile={self.run}/slurmd.pid
SlurmctldLogFile={self.log}/slurmctld.log
SlurmdLogFile={self.log}/slurmd.log
# no systemd or cgroups in containers
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
KillWait=5
MinJobAge=300
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
# keep sbatch --comment (the executor plugin writes the rule name there) in sacct
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} Gres=gpu:{self.gpus} State=UNKNOWN
PartitionName={self.partition} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
        (self.etc / "gres.conf").write_text(f"Name=gpu File={self.base}/dev/nvidia[0-{self.gpus - 1}]\n")
        dbd = self.etc / "slurmdbd.conf"
        dbd.write_text(f"""AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile={self.run}/slurmdbd.pid
LogFile={self.log}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.db_port}
StorageUser=slurm
StoragePass=ftgen
StorageLoc=slurm_acct_db
""")
        dbd.chmod(0o600)
        # clients (incl. the srun inside every job, whose environment the plugin cleans of
        # SLURM_*) find the config only at the default path: link it there, remember what we did
        ETC_SLURM.mkdir(parents=True, exist_ok=True)
        for name in ("slurm.conf", "gres.conf", "slurmdbd.conf"):
            link = ETC_SLURM / name
            if link.exists() and not link.is_symlink():
                raise RuntimeError(f"{link} is a real file: this machine has its own SLURM; not touching it")
            if link.is_symlink():
                link.unlink()
            link.symlink_to(self.etc / name)
            self.linked.append(link)

    # ------------------------------------------------------------------ daemons
    def _pidfile_daemon(self, name: str, argv: list[str], pidfile: Path, ready) -> None:
        pidfile.unlink(missing_ok=True)
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)  # these daemons fork themselves
        _wait(f"{name} writes {pidfile}", lambda: pidfile.exists() and pidfile.read_text().strip())
        self.started.append((name, int(pidfile.read_text().split()[0])))
        _wait(f"{name} ready", ready)

    def _start_munge(self) -> None:
        if _ok("sh", "-c", "munge -n | unmunge"):
            return  # a munged we did not start is answering: use it, never stop it
        key = Path("/etc/munge/munge.key")
        if not key.exists() or key.stat().st_size == 0:
            subprocess.run(["mungekey", "--create", "--force"], check=True)
        shutil.chown(key, "munge", "munge")
        key.chmod(0o600)
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        self._pidfile_daemon(
            "munged",
            ["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--force"],
            Path("/run/munge/munged.pid"),
            lambda: _ok("sh", "-c", "munge -n | unmunge"),
        )

    def _start_mariadb(self) -> None:
        data, sock = self.base / "mysql", self.run / "mysqld.sock"
        if not (data / "mysql").exists():
            subprocess.run(
                [
                    "mariadb-install-db",
                    "--no-defaults",
                    "--user=root",
                    f"--datadir={data}",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        proc = subprocess.Popen(
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                "--user=root",
                f"--datadir={data}",
                f"--socket={sock}",
                f"--port={self.db_port}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                f"--log-error={self.log}/mariadb.err",
                "--innodb-buffer-pool-size=64M",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.started.append(("mariadbd", proc.pid))
        _wait("mariadbd answers", lambda: _ok("mariadb-admin", "--no-defaults", f"--socket={sock}", "ping"))
        sql = (
            "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'ftgen';"
            "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'ftgen';"
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
        )
        subprocess.run(["mariadb", "--no-defaults", f"--socket={sock}", "-uroot", "-e", sql], check=True)

    def up(self) -> LocalSlurm:
        why = missing_requirements()
        if why:
            raise RuntimeError(f"local SLURM: {why}")
        os.environ.pop("SLURM_CONF", None)
        try:
            self._write_configs()
            self._start_munge()
            self._start_mariadb()
            self._pidfile_daemon(
                "slurmdbd",
                ["/usr/sbin/slurmdbd"],
                self.run / "slurmdbd.pid",
                lambda: _ok("sacctmgr", "-n", "show", "cluster"),
            )
            self._pidfile_daemon(
                "slurmctld", ["/usr/sbin/slurmctld"], self.run / "slurmctld.pid", lambda: _ok("scontrol", "ping")
            )
            self._pidfile_daemon(
                "slurmd", ["/usr/sbin/slurmd", "-N", "localhost"], self.run / "slurmd.pid", lambda: True
            )
            _wait("node idle", self._node_idle, timeout=60)
            _wait("cluster registered with slurmdbd", self._registered, timeout=60)
        except BaseException:
            self.down()
            raise
        return self

    def _registered(self) -> bool:
        out = subprocess.run(
            ["sacctmgr", "-n", "-P", "show", "cluster", "format=cluster,controlport"], capture_output=True, text=True
        ).stdout
        return "ftgentest|6817" in out

    def _node_idle(self) -> bool:
        state = subprocess.run(
            ["sinfo", "-h", "-N", "-n", "localhost", "-o", "%T"], capture_output=True, text=True
        ).stdout.strip()
        if any(s in state for s in ("drain", "down", "inval")):
            subprocess.run(["scontrol", "update", "nodename=localhost", "state=resume"], capture_output=True)
        return state in ("idle", "mixed", "allocated")

    def down(self) -> None:
        """Cancel jobs, then stop every daemon we started, newest first: TERM, then KILL."""
        if any(name == "slurmctld" for name, _ in self.started):
            subprocess.run(["scancel", "--full", "-u", "root"], capture_output=True)
            end = time.time() + 10
            while time.time() < end and subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip():
                time.sleep(0.2)
        for _name, pid in reversed(self.started):
            if not alive(pid):
                continue
            os.kill(pid, signal.SIGTERM)
            end = time.time() + 15
            while alive(pid) and time.time() < end:
                time.sleep(0.1)
                try:
                    os.waitpid(pid, os.WNOHANG)  # reap mariadbd, our child
                except ChildProcessError:
                    pass
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.started.clear()
        for link in self.linked:
            if link.is_symlink():
                link.unlink()
        self.linked.clear()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["up", "check"])
    ap.add_argument("--base", default="/tmp/ftgen-slurm")
    args = ap.parse_args()
    if args.action == "check":
        print(missing_requirements() or "ok")
        sys.exit(0)
    cluster = LocalSlurm(args.base).up()
    print(subprocess.run(["sinfo", "-N", "-o", "%N %P %T %c %m %G"], capture_output=True, text=True).stdout)
    print("up; daemons:", cluster.started, "- press Ctrl-C to stop them")
    try:
        signal.pause()
    finally:
        cluster.down()
