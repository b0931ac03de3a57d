"""Small problems the tests share: `from toy import toy, jobs_world` (pytest puts `tests/` on `sys.path`)."""
import datetime as dt

import numpy as np
import polars as pl


def toy(task, n=1500, seed=0, class_names=None) -> pl.DataFrame:
    """Numbers, a text column and a region id (a slice column, not an input); a target per task.

    Multiclass targets are class indices 0..2, or `class_names[index]` when given."""
    r = np.random.default_rng(seed)
    X = r.standard_normal((n, 4))
    plan = r.choice(["basic", "plus", "pro"], n)
    z = X[:, 0] + X[:, 1] ** 2 + (plan == "pro") + 0.5 * r.standard_normal(n)
    classes = np.digitize(z, [0.3, 1.5])
    y = {"binary": (z > 1).astype(int), "multiclass": classes if class_names is None else np.asarray(class_names)[classes],
         "regression": 10 + 3 * z}[task]
    t = pl.datetime_range(pl.datetime(2025, 1, 1), pl.datetime(2025, 1, 1) + pl.duration(hours=n - 1), "1h", eager=True, time_zone="UTC")
    return pl.DataFrame({f"x{i}": X[:, i] for i in range(4)}).with_columns(plan=pl.Series(plan), region_id=pl.Series(r.integers(1, 6, n)),
                                                                            label=pl.Series(y), t=t)


def jobs_world(ws, seed: int = 5, base: dt.datetime = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)):
    """Site readings over the 200 days from `base` (text site codes, some null; times written as strings) and jobs at
    sites with a duration to predict; a feature service by site code with an on-demand view; the model `job_duration`
    trained and registered. Returns (run id, site codes)."""
    from mlops_workbench.core.storage import write_dataset
    from mlops_workbench.experiments.definition import Experiment, IntParam, KFold
    from mlops_workbench.features.definitions import Aggregation, Entity, FeatureService, FeatureView, OnDemandFeatureView, apply
    from mlops_workbench.features.offline import build_features
    from mlops_workbench.registry.gates import default_gates
    from mlops_workbench.registry.validation import validate_model
    from mlops_workbench.registry.versions import register_model
    from mlops_workbench.training.fit import train
    UTC = dt.timezone.utc
    r = np.random.default_rng(seed)
    sites = [f"site-{i:03d}" for i in range(40)]
    m = 6000
    times = [base + dt.timedelta(minutes=int(x)) for x in r.integers(0, 60 * 24 * 200, m)]
    readings = pl.DataFrame({
        "site_code": [None if r.random() < 0.02 else sites[i] for i in r.integers(0, len(sites), m)],
        "read_at": [t.strftime("%Y-%m-%d %H:%M:%S") for t in times],  # as a CSV export would hold them
        "temp": [None if r.random() < 0.1 else float(v) for v in r.normal(20, 5, m)],
        "state": r.choice(["ok", "warn", "fault"], m).tolist()})
    readings = readings.with_columns(pl.col("read_at").str.to_datetime("%Y-%m-%d %H:%M:%S", time_zone="UTC"))
    write_dataset(ws, "readings", readings, source={"kind": "test", "location": "toy.jobs_world"})
    n = 1500
    days = [base + dt.timedelta(hours=int(x)) for x in r.integers(24 * 10, 24 * 200, n)]
    crew_size = r.integers(1, 6, n)
    jobs = pl.DataFrame({
        "site_code": [None if r.random() < 0.03 else sites[i] for i in r.integers(0, len(sites), n)],
        "planned_at": [d.isoformat() for d in days], "visit_day": [d.strftime("%Y-%m-%d") for d in days],
        "crew_size": crew_size.tolist(), "crew": r.choice(["alpha", "beta", "gamma"], n).tolist(),
        "duration": (30 + 10 * crew_size + r.normal(0, 5, n)).tolist()})
    jobs = jobs.with_columns(pl.col("planned_at").str.to_datetime(time_zone="UTC").alias("event_timestamp")).drop("planned_at")
    write_dataset(ws, "jobs", jobs, source={"kind": "test", "location": "toy.jobs_world"})
    apply(ws, Entity("site", ["site_code"]),
          FeatureView("site_stats", entity="site", source="readings", timestamp="read_at", ttl="14d",
                      features={"last_temp": pl.col("temp"), "last_state": pl.col("state")},
                      aggregations=[Aggregation("temp", "mean", "7d"), Aggregation("temp", "count", "30d")]),
          OnDemandFeatureView("job_load", sources=["site_stats"], request={"crew_size": "int"},
                              features={"temp_per_crew": pl.col("last_temp") / pl.col("crew_size")}),
          FeatureService("site_svc", ["site_stats", "job_load"]))
    build_features(ws, "site_stats")
    exp = Experiment(name="job_duration", target="duration", task="regression", feature_service="site_svc", entities="jobs",
                     exclude=["visit_day"], split=KFold(k=3), search_space={"num_leaves": IntParam(4, 16)},
                     params={"num_threads": 1}, trials=1, num_boost_round=30)
    run_id = train(ws, exp, {"num_leaves": 15, "min_child_samples": 5}, run_name="jobs").run_id
    register_model(ws, run_id, "job_duration", validate_model(ws, run_id, default_gates("regression")), who="test")
    return run_id, sites


def credit_loans(n: int = 1_200, seed: int = 11) -> pl.DataFrame:
    "Generated loan applications with their `defaulted` label: the demo's shape, small."
    from mlops_workbench.data.synthetic import generate_lending
    lend = generate_lending(n, seed=seed)
    return lend.applications.join(lend.labels.select("application_id", "defaulted"), on="application_id")


def credit_version(ws, loans: pl.DataFrame, params: dict, run_name: str, who: str = "alice", slices=None, rounds: int = 40):
    """A `credit_default` model trained on `loans` with `params`, validated with the binary gates (`slices`: per-slice
    gates) and registered by `who`. Returns (training run id, model version)."""
    from mlops_workbench.experiments.definition import Experiment, FloatParam, IntParam, TimeSplit
    from mlops_workbench.registry.gates import default_gates
    from mlops_workbench.registry.validation import validate_model
    from mlops_workbench.registry.versions import register_model
    from mlops_workbench.training.fit import train
    exp = Experiment("credit_default", target="defaulted", exclude=["application_id", "customer_id"], split=TimeSplit("event_timestamp", valid_size=0.25),
                     search_space={"learning_rate": FloatParam(0.02, 0.3, log=True), "num_leaves": IntParam(4, 32, log=True)},
                     params={"num_threads": 1}, num_boost_round=rounds, trials=1, seed=7)
    run = train(ws, exp, params, data=loans, run_name=run_name).run_id
    return run, register_model(ws, run, "credit_default", validate_model(ws, run, default_gates("binary", slices=slices or [])), owner=who, who=who)
