"""The inference log's durability contract, with real processes and a real Delta table in a temp workspace:
several writer processes lose no row; SIGTERM (its handler calls close) loses none; SIGKILL loses only the tail logged
after the last batch was taken off the queue (at most one flush interval); slow storage keeps memory bounded and makes
`.log` raise Unavailable (503) after put_timeout_s; a bad record is refused at `.log` and never blocks its batch."""
import datetime as dt, os, signal, subprocess, sys, textwrap, threading, time

import polars as pl
import pytest
from deltalake import DeltaTable

from mlops_workbench.core.errors import InvalidInput, Unavailable
from mlops_workbench.serving.inference_log import INFERENCE_LOG_SCHEMA, InferenceLog, log_uri, read_inference_log

pytestmark = pytest.mark.timeout(300)

CHILD = textwrap.dedent('''
    import datetime as dt, os, signal, sys, time
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.serving.inference_log import InferenceLog
    root, mode, n, flush, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    log = InferenceLog(Workspace.open(root), flush_interval_s=flush, max_batch=500)
    def on_term(*_):
        log.close(); sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    me = str(os.getpid())
    def rec(i):
        at = dt.datetime.now(dt.timezone.utc)
        return at, {"request_id": f"{me}-{i}", "row": i, "at": at, "model": "m", "version": 1, "endpoint": "/predict", "caller": me,
                    "inputs": "{}", "features": None, "output": "{}", "prediction": 0.5, "label": None, "latency_us": 1, "status": 200}
    os.write(1, b"ready\\n")
    if mode == "steady":  # one row every 1/rate s; each row's seq and time go to stdout (a pipe: SIGKILL cannot lose them)
        t0 = time.monotonic()
        for i in range(n):
            at, r = rec(i)
            log.log(r)
            os.write(1, f"{i} {at.isoformat()}\\n".encode())
            time.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))
    else:
        for i in range(n): log.log(rec(i)[1])
    os.write(1, f"logged {n}\\n".encode())
    if mode == "burst_exit": log.close(); sys.exit(0)
    time.sleep(600)
''')


def child(tmp_path, ws, mode, n, flush=1.0, rate=0.0):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MLW_HOME", None)
    return subprocess.Popen([sys.executable, str(script), str(ws.root), mode, str(n), str(flush), str(rate)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_line(p, prefix, timeout=120):
    "Read the child's stdout until a line starting with `prefix`; return every line read."
    lines, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        line = p.stdout.readline()
        if not line: raise AssertionError(f"child exited ({p.wait()}): {p.stderr.read()}")
        lines.append(line.strip())
        if line.startswith(prefix): return lines
    raise AssertionError(f"child never printed {prefix!r}")


def test_several_processes_append_without_losing_rows(tmp_path, ws):
    ps = [child(tmp_path, ws, "burst_exit", 6000, flush=0.02) for _ in range(3)]
    for p in ps:
        assert p.wait(timeout=240) == 0, p.stderr.read()
    df = read_inference_log(ws)
    assert df.height == 18_000 and df.select("request_id").n_unique() == 18_000
    assert sorted(df.group_by("caller").len()["len"].to_list()) == [6000] * 3
    commits = DeltaTable(log_uri(ws, "inference_log")).history()
    writers = {c.get("mlw.writer") for c in commits if c.get("operation") == "WRITE"}
    assert len(writers) == 3 and len(commits) >= 36  # batches of at most 500 rows: every process committed many times, concurrently


def test_sigterm_loses_nothing(tmp_path, ws):
    p = child(tmp_path, ws, "burst", 20_000, flush=60.0)  # nothing would be written for a minute but for close
    wait_line(p, "logged")
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=120) == 0, p.stderr.read()
    df = read_inference_log(ws)
    assert df.height == 20_000 and sorted(df["row"].to_list()) == list(range(20_000))


def test_sigkill_loses_at_most_the_rows_since_the_last_flush(tmp_path, ws):
    flush, rate = 0.25, 400.0
    p = child(tmp_path, ws, "steady", 100_000, flush=flush, rate=rate)
    wait_line(p, "ready")
    time.sleep(3.13)  # not a multiple of the flush interval: the kill lands part-way through one
    p.kill()
    p.wait(timeout=30)
    logged = {}
    for line in p.stdout.read().splitlines():
        i, at = line.split()
        logged[int(i)] = dt.datetime.fromisoformat(at)
    df = read_inference_log(ws)
    written = sorted(df["row"].to_list())
    assert len(logged) > 200 and written == list(range(len(written)))  # what survived is a prefix: only the tail was lost
    lost = [i for i in logged if i >= len(written)]
    last = max((c for c in DeltaTable(log_uri(ws, "inference_log")).history() if c.get("operation") == "WRITE"),
               key=lambda c: c["version"])
    drained_at = dt.datetime.fromisoformat(last["mlw.drained_at"])
    # every lost row was logged after the last committed batch was taken off the queue (a few ms of slack for the
    # instant between a row's timestamp and its append)
    assert all(logged[i] >= drained_at - dt.timedelta(milliseconds=50) for i in lost), (drained_at, [logged[i] for i in lost[:3]])
    print(f"\nSIGKILL: {len(logged)} rows logged at {rate:.0f}/s, {len(written)} written, {len(lost)} lost; "
          f"one flush interval ({flush} s) is {flush * rate:.0f} rows")


def rec(i, **kw):
    return {"request_id": f"r{i}", "row": 0, "model": "m", "version": 1, "endpoint": "/predict", "caller": "t", "inputs": "{}",
            "output": "{}", "prediction": 0.5, "latency_us": 1, "status": 200, **kw}


def test_slow_storage_bounds_memory_and_refuses_with_503(ws):
    gate = threading.Event()
    log = InferenceLog(ws, flush_interval_s=0.02, max_batch=100, max_pending=1000, put_timeout_s=0.1)
    log.before_write = lambda n: gate.wait(60)  # storage that does not answer until the gate opens
    accepted, refused, peak, i = 0, 0, 0, 0
    while refused < 3 and i < 5000:  # each refusal waits put_timeout_s first
        try: log.log(rec(i)); accepted += 1
        except Unavailable as e:
            refused += 1
            assert e.http_status == 503 and "rows wait to be written" in str(e)
        peak, i = max(peak, log.depth), i + 1
    assert refused == 3 and accepted == 1100 and peak == 1100  # max_pending waiting + the batch the stuck write holds
    gate.set()
    log.flush()
    log.close()
    assert read_inference_log(ws).height == accepted and log.written == accepted


def test_failing_storage_retries_and_never_drops(ws):
    fails = {"left": 5}
    def flaky(n):
        if fails["left"]:
            fails["left"] -= 1
            raise OSError("storage unreachable")
    log = InferenceLog(ws, flush_interval_s=0.02, max_batch=50)
    log.before_write = flaky
    for i in range(300): log.log(rec(i))
    log.flush(timeout_s=60)
    log.close()
    assert log.failed_batches == 5 and log.written == 300 and read_inference_log(ws).height == 300


def test_bad_records_are_refused_and_never_poison_a_batch(ws):
    log = InferenceLog(ws, flush_interval_s=0.02)
    log.log(rec(1))
    for bad, why in [({**rec(2), "version": "1"}, "version is str, expected int"), ({k: v for k, v in rec(3).items() if k != "model"}, "missing model"),
                     (rec(4, at=dt.datetime(2025, 1, 1)), "time-zone-aware"), (["not", "a", "dict"], "is a list"),
                     (rec(5, extra=1), "unknown field(s) ['extra']")]:
        with pytest.raises(InvalidInput, match="nothing was logged|pass a dict") as e:
            log.log(bad)
        assert why in str(e.value)
    with pytest.raises(InvalidInput, match="cannot be stored .*64-bit.*nothing was logged"): log.log(rec(6, row=2**70))  # no int64 holds it
    log.log(rec(7, features={"amount": 1.5}, at=dt.datetime(2025, 3, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))))
    log.flush(); log.close()
    df = read_inference_log(ws)
    assert df["request_id"].to_list() == ["r7", "r1"] and log.rejected == 0 and df.schema == INFERENCE_LOG_SCHEMA
    assert df["at"][0] == dt.datetime(2025, 3, 1, 10, tzinfo=dt.timezone.utc) and df["features"][0] == '{"amount":1.5}'
    assert read_inference_log(ws, since=dt.datetime(2025, 3, 2, tzinfo=dt.timezone.utc))["request_id"].to_list() == ["r1"]
