"""What watching the workbench costs (issue 16): a Prometheus scrape of the workbench's metrics against the store's size,
and tracing's cost per traced unit of work, each beside a named baseline in the same process.

Run: .venv/bin/python bench/observability.py [--runs 1000,20000] [--steps 5] [--spans 20000] [--repeat 5]

scrape   A temporary workspace (embedded SQLite store) holds N pipeline runs of 4 pipelines, each with --steps steps,
         a tenth of them failed, written straight into the tables (what many months of runs leave). One scrape is
         `workbench_metrics_text(ws)` (every metric family: runs, steps, deployments, monitors, alerts) with its cache
         off; the baselines are what an exporter written without the aggregate queries would do:
           rows    read every run with its steps through the runner's own API (`list_runs(ws, limit=N)`) and count them
           count   one `SELECT pipeline, status, count(*) ... GROUP BY`: the cheapest query that gives one of the families
         Printed: best-of --repeat milliseconds, samples exported, and the ratios scrape/rows and scrape/count.
spans    The gateway's shape of a traced request: one root span and five children (auth, validate, features, predict,
         log), --spans times, through `observability.traces.span`. Configurations: tracing off (the shared no-op span),
         the file exporter (JSON lines through the batch processor, what `[observability] tracing = "file"` sets), the
         same sampled at 1%, and the in-memory exporter. Baseline: the same loop with no span calls at all.
         Printed: microseconds per request and the ratio to the bare loop. Spans dropped by a full batch queue are not
         counted as written: the file's line count is printed beside the number sent.
"""
import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _fill(ws, n_runs: int, n_steps: int):
    "N runs of 4 pipelines with their steps, a tenth failed, written in bulk."
    import sqlalchemy as sa
    from mlops_workbench.core.metadata import pipeline_runs, pipeline_steps
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    runs, steps = [], []
    for i in range(n_runs):
        start = t0 + dt.timedelta(minutes=7 * i)
        failed = i % 10 == 9
        rid = f"{i:012x}"
        runs.append(dict(id=rid, pipeline=f"pipeline_{i % 4}", status="failed" if failed else "succeeded", spec={}, parameters={},
                         started_at=start, ended_at=start + dt.timedelta(seconds=60 + i % 50), duration_s=60.0 + i % 50, host="bench", pid=1,
                         pid_started=0.0, error={"message": "boom"} if failed else None))
        for k in range(n_steps):
            s = start + dt.timedelta(seconds=12 * k)
            st = "failed" if failed and k == n_steps - 1 else "succeeded"
            steps.append(dict(run_id=rid, name=f"step_{k}", position=k, status=st, parameters={}, attempts=1, started_at=s,
                              ended_at=s + dt.timedelta(seconds=10 + k), duration_s=10.0 + k, outputs={}, error=None, notebook=None))
    with ws.metadata.begin() as c:
        for chunk in range(0, len(runs), 5000): c.execute(sa.insert(pipeline_runs), runs[chunk:chunk + 5000])
        for chunk in range(0, len(steps), 5000): c.execute(sa.insert(pipeline_steps), steps[chunk:chunk + 5000])


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter(); out = fn(); best = min(best, time.perf_counter() - t)
    return best, out


def bench_scrape(sizes, n_steps: int, repeat: int):
    import sqlalchemy as sa
    from mlops_workbench.core.metadata import pipeline_runs
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.observability.workbench import WorkbenchCollector
    from mlops_workbench.pipelines.runner import list_runs
    from prometheus_client import CollectorRegistry, generate_latest
    print(f"\nscrape: the workbench's /metrics vs reading the rows and vs one GROUP BY (SQLite store, {n_steps} steps a run, best of {repeat})")
    print(f"{'runs':>8} {'scrape ms':>10} {'samples':>8} {'rows ms':>9} {'count ms':>9} {'scrape/rows':>12} {'scrape/count':>13}")
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            ws = Workspace.init(Path(d) / "ws")
            _fill(ws, n, n_steps)
            reg = CollectorRegistry(); reg.register(WorkbenchCollector(ws, max_age_s=0.0))  # no cache: every scrape reads the store
            t_scrape, text = _best(lambda: generate_latest(reg), repeat)
            samples = sum(1 for line in text.decode().splitlines() if line and not line.startswith("#"))
            t_rows, got = _best(lambda: len(list_runs(ws, limit=n)), max(1, repeat // 2))
            assert got == n, got
            q = sa.select(pipeline_runs.c.pipeline, pipeline_runs.c.status, sa.func.count()).group_by(pipeline_runs.c.pipeline, pipeline_runs.c.status)
            def count():
                with ws.metadata.begin() as c: return c.execute(q).all()
            t_count, _ = _best(count, repeat)
            print(f"{n:>8,} {t_scrape * 1e3:>10.1f} {samples:>8} {t_rows * 1e3:>9.1f} {t_count * 1e3:>9.2f} {t_scrape / t_rows:>12.3f} {t_scrape / t_count:>13.1f}")
            ws.close()


REQUEST = ("auth", "validate", "features", "predict", "log")


def _traced(span, n: int):
    for i in range(n):
        with span("request", route="/v1/models/m/predict"):
            for part in REQUEST:
                with span(part): pass


def _bare(n: int):
    for i in range(n):
        for part in REQUEST: pass


def bench_spans(n: int, repeat: int):
    from mlops_workbench.observability.traces import configure_tracing, shutdown_tracing, span
    print(f"\nspans: a request's six spans (root + {', '.join(REQUEST)}), {n:,} requests, best of {repeat}")
    t_bare, _ = _best(lambda: _bare(n), repeat)
    print(f"{'configuration':<22} {'us/request':>11} {'x bare loop':>12} {'spans written':>14}")
    print(f"{'bare loop (no spans)':<22} {t_bare / n * 1e6:>11.2f} {1.0:>12.1f} {'-':>14}")
    with tempfile.TemporaryDirectory() as d:
        for label, exporter, ratio in (("tracing off", None, 1.0), ("memory exporter", "memory", 1.0),
                                       ("file exporter", "file://{d}/spans.jsonl", 1.0), ("file, sampled 1%", "file://{d}/sampled.jsonl", 0.01)):
            exp = exporter.format(d=d) if exporter else None
            configure_tracing("bench", exp, sample_ratio=ratio)
            t, _ = _best(lambda: _traced(span, n), repeat)
            shutdown_tracing()
            written = "-"
            if exp and exp.startswith("file://"):
                path = Path(exp[len("file://"):])
                written = f"{sum(1 for _ in path.open()) if path.exists() else 0:,}/{6 * n * repeat:,}"
            print(f"{label:<22} {t / n * 1e6:>11.2f} {t / t_bare:>12.1f} {written:>14}")
        configure_tracing("bench", None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="1000,20000", help="store sizes (pipeline runs), comma-separated")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--spans", type=int, default=20_000, help="traced requests per configuration")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    bench_scrape([int(x) for x in a.runs.split(",")], a.steps, a.repeat)
    bench_spans(a.spans, a.repeat)


if __name__ == "__main__":
    main()
