"""A real Dask cluster for tests: a `dask scheduler` process and worker processes started here, each worker in its own
folder with one thread (OMP_NUM_THREADS=1), on loopback. The fixture `dask_cluster` yields a `DaskCluster` with the
scheduler's address and ways to kill a worker (SIGKILL, as a crash would) and to start a replacement; teardown stops them all.
"""
import contextlib, os, shutil, signal, subprocess, sys, tempfile, time
from pathlib import Path

import pytest

from conftest import free_port, wait_for_server


def _registered(address: str) -> dict:
    "The scheduler's workers, {address: name}, asked through a short-lived client (OSError while it does not answer)."
    from distributed import Client
    try:
        with Client(address, timeout=2, set_as_default=False) as c:
            return {a: w.get("name") for a, w in c.scheduler_info(n_workers=-1)["workers"].items()}
    except (TimeoutError, OSError) as e: raise OSError(str(e)) from None


class DaskCluster:
    "A scheduler process and worker processes; `address` is the scheduler's tcp:// address."
    def __init__(self, folder: Path, timeout_s: float = 60, scheduler_env: dict | None = None):
        self.folder, self.timeout_s, self.port = folder, timeout_s, free_port()
        self.address, self.workers, self.n = f"tcp://127.0.0.1:{self.port}", {}, 0
        env = {**os.environ, "OMP_NUM_THREADS": "1", **(scheduler_env or {})}
        self.log = folder / "scheduler.log"
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(self.port),
             "--dashboard-address", ":0", "--no-show"], cwd=folder, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        wait_for_server(self.scheduler, lambda: _registered(self.address) is not None, "dask scheduler", self.log, timeout_s)

    def start_worker(self) -> str:
        "Start one more worker process (name wN) and wait until the scheduler lists it; its name."
        self.n += 1
        name = f"w{self.n}"
        wdir = self.folder / name; wdir.mkdir()
        log = wdir / "worker.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--nthreads", "1", "--host", "127.0.0.1",
             "--no-dashboard", "--local-directory", str(wdir), "--name", name],
            cwd=wdir, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=log.open("w"), stderr=subprocess.STDOUT)
        self.workers[name] = proc
        wait_for_server(proc, lambda: name in _registered(self.address).values(), f"dask worker {name}", log, self.timeout_s)
        return name

    def names(self) -> dict:
        "{worker address: name} of the workers the scheduler lists now."
        return _registered(self.address)

    def kill(self, name_or_address: str) -> str:
        "SIGKILL one worker (by name, or by its address as the scheduler lists it) and wait until the scheduler drops it; its name."
        name = name_or_address if name_or_address in self.workers else self.names()[name_or_address]
        proc = self.workers[name]
        proc.send_signal(signal.SIGKILL); proc.wait(timeout=10)
        deadline = time.monotonic() + self.timeout_s
        while name in self.names().values():
            if time.monotonic() > deadline: pytest.fail(f"the scheduler still lists worker {name} {self.timeout_s} s after its SIGKILL", pytrace=False)
            time.sleep(0.05)
        return name

    def scheduler_log(self) -> str: return self.log.read_text()

    def close(self):
        for proc in [*self.workers.values(), self.scheduler]:
            if proc.poll() is None: proc.terminate()
        for proc in [*self.workers.values(), self.scheduler]:
            try: proc.wait(timeout=10)
            except subprocess.TimeoutExpired: proc.kill(); proc.wait()


@contextlib.contextmanager
def dask_cluster_of(n_workers: int = 2, **kw):
    "A `DaskCluster` with `n_workers` workers registered, in a throw-away folder; stopped on exit."
    folder = Path(tempfile.mkdtemp(prefix="mlw-dask-"))
    cluster = DaskCluster(folder, **kw)
    try:
        for _ in range(n_workers): cluster.start_worker()
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def dask_cluster():
    "A scheduler and 2 single-thread worker processes on loopback; yields the `DaskCluster` (address, kill, start_worker)."
    with dask_cluster_of(2) as cluster:
        yield cluster
