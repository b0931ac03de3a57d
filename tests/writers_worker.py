"""One writer of tests/test_concurrency_writers.py, in a process of its own.

`python writers_worker.py TASK WORKSPACE GATE ARG`: import everything, open the workspace, wait until the file GATE exists
(so that all the writers start together), run TASK, and print one line `RESULT {json}`: what it returned, or the
exception that reached the caller (its type, whether it is an MLWError, its message).
"""
import json, os, sys, time, traceback

os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2-core machines: LightGBM on one thread


def validate(ws, arg):
    from mlops_workbench.data.quality import validate_dataset
    from mlops_workbench.data.rules import AllowedValues, NotNull, RuleSet
    rules = RuleSet("visits_rules", [NotNull("shop_code", policy="quarantine"), AllowedValues("channel", ["web", "store"], policy="quarantine")])
    r = validate_dataset(ws, "visits", rules, checks=[])
    return {"status": r.status, "id": r.id}


def record_ready(ws, arg):
    "Validate in memory before the gate: the race is in recording the report and observing the version."
    from mlops_workbench.core.storage import read_dataset
    from mlops_workbench.data.rules import NotNull, RuleSet
    from mlops_workbench.data.validate import validate
    return validate(read_dataset(ws, "visits", 0).collect(), RuleSet("visits_rules", [NotNull("shop_code", policy="quarantine")]))


def record(ws, arg, report):
    from mlops_workbench.data.quality import observe
    rid = report.record(ws, "visits", 0)
    observe(ws, "visits", 0, report=report, checks=[])
    return {"id": rid}


def features(ws, arg):
    import polars as pl
    from mlops_workbench.features.definitions import Aggregation, Entity, FeatureView, apply
    from mlops_workbench.features.offline import build_features
    from mlops_workbench.features.online import materialize
    applied = apply(ws, Entity("shop", ["shop_code"]),
                    FeatureView("shop_stats", entity="shop", source="visits", timestamp="seen_at", ttl="30d",
                                features={"last_spend": pl.col("spend"), "last_channel": pl.col("channel")},
                                aggregations=[Aggregation("spend", "sum", "7d")]))
    b = build_features(ws, "shop_stats")
    m = materialize(ws, "shop_stats", end=__import__("datetime").datetime(2025, 3, 1, tzinfo=__import__("datetime").timezone.utc))
    return {"applied": [a.status for a in applied], "build": b.id, "table_version": b.table_version, "materialization": m.id}


def training_set(ws, arg):
    from mlops_workbench.features.offline import get_training_data
    import polars as pl
    entities = pl.DataFrame({"shop_code": ["shop-01", "shop-02", None], "event_timestamp": ["2025-02-01T00:00:00Z"] * 3}) \
        .with_columns(pl.col("event_timestamp").str.to_datetime(time_zone="UTC"))
    return {"id": get_training_data(ws, entities, ["shop_stats:last_spend", "shop_stats:spend_sum_7d"]).id}


def search(ws, arg):
    from mlops_workbench.experiments.definition import Experiment
    from mlops_workbench.experiments.search import search as run
    r = run(ws, Experiment.from_yaml(arg), report=False, progress=False)
    return {"parent": r.parent_run_id if hasattr(r, "parent_run_id") else None}


def register_ready(ws, arg):
    "Validate before the gate: the race is in registering and promoting."
    from mlops_workbench.registry.gates import MetricThreshold
    from mlops_workbench.registry.validation import validate_model
    return validate_model(ws, arg.split(",")[0], [MetricThreshold("r2", min=-100.0)], log=False)


def register(ws, arg, report):
    from mlops_workbench.registry.versions import promote, register_model
    run_id, who = arg.split(",")
    mv = register_model(ws, run_id, "visit_spend", report, who=who)
    promote(ws, "visit_spend", mv.version, "production", who=who, reason=f"{who} promotes its own")
    return {"version": int(mv.version)}


def deliver(ws, arg):
    import datetime as dt
    from mlops_workbench.alerts import deliver_pending
    return deliver_pending(ws, now=dt.datetime.fromisoformat(arg))


TASKS = {f.__name__: f for f in (validate, record, features, training_set, search, register, deliver)}
READY = {"register": register_ready, "record": record_ready}  # task -> what it does before the gate; its result is the task's third argument

if __name__ == "__main__":
    task, root, gate, arg = sys.argv[1:5]
    # every import before the gate, so that the writers race in their writes and not in their imports
    import mlops_workbench.data.quality, mlops_workbench.features.online, mlops_workbench.features.offline  # noqa: E401
    import mlops_workbench.experiments.search, mlops_workbench.registry.versions, mlops_workbench.alerts  # noqa: E401
    from mlops_workbench.core.errors import MLWError
    from mlops_workbench.core.workspace import Workspace
    ws = Workspace.open(root)
    ready = (READY[task](ws, arg),) if task in READY else ()
    deadline = time.monotonic() + 120
    while not os.path.exists(gate) and time.monotonic() < deadline: time.sleep(0.005)
    try: out = {"ok": True, "result": TASKS[task](ws, arg, *ready)}
    except BaseException as e:
        out = {"ok": False, "type": f"{type(e).__module__}.{type(e).__name__}", "mlw": isinstance(e, MLWError), "message": str(e),
               "traceback": traceback.format_exc()}
    print("RESULT " + json.dumps(out, default=str), flush=True)
