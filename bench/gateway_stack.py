"""The three ways into the bench database: direct, through pgbouncer, through Proctor.

``bench_gateway.py`` and ``profile_gateway.py`` measure; this module only sets the scene:

* :func:`prepare_database` creates ``proctor_bench`` (if missing) and runs ``pgbench -i`` in
  it; no other database is touched.
* :class:`Stack` starts pgbouncer (session pooling) and ``proctor serve`` as subprocesses,
  each with its own files in a work directory, and stops them again. Proctor runs with the
  configuration a deployment would have: every statement decided (risk + Cedar) and its
  decision recorded in the ledger before it is forwarded, an outcome event after it ran,
  the ledger's default durability.

Everything listens on 127.0.0.1 only. pgbouncer is the Debian package; when it is missing,
:func:`find_pgbouncer` says how to install it (the benchmark never installs anything).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from benchlib import ROOT, log
from proctor.gateway.postgres.scram import make_verifier

HOST: Final = "127.0.0.1"
PG_PORT: Final = 5432
PG_USER: Final = "postgres"
DATABASE: Final = "proctor_bench"
SCALE: Final = 10
BENCH_USER: Final = "bencher"
BENCH_PASSWORD: Final = "bench-pw"  # a throwaway user of a throwaway gateway
UPSTREAM: Final = "pg"
PGBENCH: Final = "/usr/bin/pgbench"
INSTALL_PGBOUNCER: Final = "apt-get update && apt-get install -y pgbouncer"
PROCTOR: Final = Path(sys.executable).with_name("proctor")

# The example risk guards (examples/policies/risk.cedar) stay in: every statement is
# evaluated against forbids as well as the permits below, as in a deployment.
BENCH_POLICY: Final = """\
// The benchmark user: connect, run transactions, read and write the pgbench tables.

@id("bench-connect")
@reason("the benchmark user may connect and run transactions")
@recheck("15m")
permit (
  principal in Role::"bencher",
  action in [Action::"connect", Action::"transaction", Action::"read"],
  resource == Database::"{upstream}"
);

@id("bench-tables")
@reason("the benchmark user reads and writes the tables of {database}")
@recheck("15m")
permit (
  principal in Role::"bencher",
  action in [Action::"read", Action::"write"],
  resource in Database::"{database}"
);
"""

PROCTOR_TOML: Final = """\
# Written by bench/gateway_stack.py for one benchmark run.
gateway = "proctor-bench"
admin_socket = "admin.sock"

[[listeners]]
address = "{host}:0"
upstream = "{upstream}"

[[upstreams]]
name = "{upstream}"
host = "{host}"
port = {pg_port}
database = "{database}"
user = "{pg_user}"

[[users]]
name = "{user}"
roles = ["bencher"]
scram_verifier = "{verifier}"

[policies]
directory = "policies"

[ledger]
directory = "ledger"

[risk]
labels = {{ corp = ["127.0.0.0/8"] }}
"""

PGBOUNCER_INI: Final = """\
; Written by bench/gateway_stack.py for one benchmark run.
[databases]
{database} = host={host} port={pg_port} dbname={database} user={pg_user}

[pgbouncer]
listen_addr = {host}
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {userlist}
pool_mode = session
default_pool_size = 40
max_client_conn = 200
log_connections = 0
log_disconnections = 0
"""


class StackError(RuntimeError):
    """A part of the benchmark's set-up is missing or did not start."""


@dataclass(frozen=True)
class Target:
    """One way into the bench database, as pgbench and libpq see it."""

    name: str
    port: int
    user: str
    password: str | None = None

    def env(self) -> dict[str, str]:
        """The environment for libpq clients (pgbench) aimed at this target."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env |= {"PGHOST": HOST, "PGPORT": str(self.port), "PGUSER": self.user}
        env |= {"PGDATABASE": DATABASE, "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "10"}
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    def dsn(self) -> str:
        """A libpq connection string for this target."""
        parts = {"host": HOST, "port": str(self.port), "user": self.user, "dbname": DATABASE}
        parts["sslmode"] = "disable"
        if self.password is not None:
            parts["password"] = self.password
        return " ".join(f"{k}={v}" for k, v in parts.items())


DIRECT: Final = Target("direct", PG_PORT, PG_USER)


def find_pgbouncer() -> str:
    """pgbouncer's path, or StackError with the install command."""
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if found is None:
        raise StackError(f"pgbouncer is not installed; install it with:\n    {INSTALL_PGBOUNCER}")
    return found


def check_tools() -> str:
    """pgbouncer's path, after checking pgbench and PostgreSQL are there too."""
    if not Path(PGBENCH).exists():
        raise StackError(f"{PGBENCH} is missing (it comes with postgresql-client)")
    pgbouncer = find_pgbouncer()
    ready = subprocess.run(
        ["pg_isready", "-q", "-h", HOST, "-p", str(PG_PORT)], check=False, timeout=10
    )
    if ready.returncode != 0:
        raise StackError(f"PostgreSQL does not answer on {HOST}:{PG_PORT}")
    return pgbouncer


def versions(pgbouncer: str) -> dict[str, str]:
    """The versions of the programs measured, for the report."""

    def first_line(*cmd: str) -> str:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=10)
        text = (out.stdout or out.stderr).strip()
        return text.splitlines()[0] if text else "unknown"

    try:
        server = psql("SHOW server_version", database="postgres")
    except StackError:
        server = ""
    return {
        "PostgreSQL": server or "unknown",
        "pgbench": first_line(PGBENCH, "--version"),
        "pgbouncer": first_line(pgbouncer, "--version"),
    }


_PSQL: Final = ("psql", "-h", HOST, "-p", str(PG_PORT), "-U", PG_USER)


def psql(*sql: str, database: str = DATABASE) -> str:
    """Run SQL statements (each on its own, outside a transaction) straight against
    PostgreSQL as the superuser; their output."""
    commands = [arg for statement in sql for arg in ("-c", statement)]
    out = subprocess.run(
        [*_PSQL, "-d", database, "-v", "ON_ERROR_STOP=1", "-Atq", *commands],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if out.returncode != 0:
        raise StackError(f"psql failed on {'; '.join(sql)!r}: {out.stderr.strip()}")
    return out.stdout.strip()


def prepare_database() -> None:
    """Create the bench database if missing and fill it with ``pgbench -i`` at SCALE."""
    exists = psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'", database="postgres")
    if not exists:
        psql(f"CREATE DATABASE {DATABASE}", database="postgres")
    log(f"pgbench -i -s {SCALE} in database {DATABASE}")
    out = subprocess.run(
        [
            PGBENCH,
            "-i",
            "-q",
            "-s",
            str(SCALE),
            "-h",
            HOST,
            "-p",
            str(PG_PORT),
            "-U",
            PG_USER,
            DATABASE,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if out.returncode != 0:
        raise StackError(f"pgbench -i failed: {out.stderr.strip()[-2000:]}")


def between_runs() -> None:
    """What pgbench does before a run unless ``-n``: vacuum the small tables, empty history.

    Done straight against PostgreSQL, so the targets are measured on equal tables."""
    psql("VACUUM pgbench_branches", "VACUUM pgbench_tellers", "TRUNCATE pgbench_history")


def free_port() -> int:
    """A TCP port on the loopback address nobody listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{what} exited with status {proc.returncode} while starting")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise StackError(f"{what} did not listen on {HOST}:{port} within {timeout:.0f} s")


@dataclass
class Stack:
    """pgbouncer and Proctor running, in front of the local PostgreSQL."""

    work: Path
    pgbouncer: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)

    @property
    def admin_socket(self) -> Path:
        """Proctor's admin socket."""
        return self.work / "proctor" / "admin.sock"

    @property
    def proctor_pid(self) -> int:
        """The ``proctor serve`` process."""
        return self.procs["proctor"].pid

    def start(self, *, with_pgbouncer: bool = True) -> None:
        """Start the gateways; ``targets`` then holds direct, pgbouncer and proctor."""
        self.work.mkdir(parents=True, exist_ok=True)
        self.targets["direct"] = DIRECT
        if with_pgbouncer:
            self.targets["pgbouncer"] = self._start_pgbouncer()
        self.targets["proctor"] = self._start_proctor()

    def _start_pgbouncer(self) -> Target:
        d = self.work / "pgbouncer"
        d.mkdir()
        userlist = d / "userlist.txt"
        userlist.write_text(f'"{PG_USER}" ""\n')
        port = free_port()
        ini = d / "pgbouncer.ini"
        ini.write_text(
            PGBOUNCER_INI.format(
                database=DATABASE,
                host=HOST,
                pg_port=PG_PORT,
                pg_user=PG_USER,
                port=port,
                userlist=userlist,
            )
        )
        cmd = [self.pgbouncer]
        if os.geteuid() == 0:
            # pgbouncer refuses to run as root; it switches to this user after start-up,
            # so its files must be readable by it.
            cmd += ["-u", PG_USER]
            for p in (self.work, d):
                p.chmod(0o755)
            for p in (ini, userlist):
                p.chmod(0o644)
        cmd.append(str(ini))
        with (d / "pgbouncer.log").open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self.procs["pgbouncer"] = proc
        _wait_port(port, proc, "pgbouncer", 15)
        return Target("pgbouncer", port, PG_USER)

    def _start_proctor(self) -> Target:
        d = self.work / "proctor"
        config = write_proctor_config(d)
        stdout = d / "serve.out"
        with stdout.open("wb") as out, (d / "serve.log").open("wb") as err:
            proc = subprocess.Popen(
                [str(PROCTOR), "serve", "--config", str(config)], stdout=out, stderr=err
            )
        self.procs["proctor"] = proc
        port = _listening_port(stdout, proc, 30)
        _wait_port(port, proc, "proctor serve", 10)
        return Target("proctor", port, BENCH_USER, BENCH_PASSWORD)

    def stop(self) -> None:
        """Stop what was started (SIGINT: Proctor ends its sessions and closes the ledger)."""
        for name, proc in self.procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop within 20 s; killing it")
                proc.kill()
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_proctor_config(d: Path) -> Path:
    """A proctor.toml in ``d`` with the bench user, its policies and a ledger beside it."""
    (d / "policies").mkdir(parents=True)
    (d / "policies" / "bench.cedar").write_text(
        BENCH_POLICY.format(upstream=UPSTREAM, database=DATABASE)
    )
    shutil.copy(ROOT / "examples" / "policies" / "risk.cedar", d / "policies" / "risk.cedar")
    config = d / "proctor.toml"
    config.write_text(
        PROCTOR_TOML.format(
            host=HOST,
            upstream=UPSTREAM,
            pg_port=PG_PORT,
            database=DATABASE,
            pg_user=PG_USER,
            user=BENCH_USER,
            verifier=make_verifier(BENCH_PASSWORD),
        )
    )
    return config


_LISTENING = re.compile(r"listening on [\d.]+:(\d+)")


def _listening_port(stdout: Path, proc: subprocess.Popen[bytes], timeout: float) -> int:
    """The port ``proctor serve`` printed (its listener asks for any free port)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = _LISTENING.search(stdout.read_text(errors="replace"))
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            log_text = stdout.with_name("serve.log").read_text(errors="replace")
            raise StackError(f"proctor serve exited ({proc.returncode}): {log_text[-2000:]}")
        time.sleep(0.05)
    raise StackError(f"proctor serve printed no listening address within {timeout:.0f} s")
