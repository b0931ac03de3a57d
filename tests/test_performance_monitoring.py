"""monitoring.performance on data with known drift and through a real gateway.

The demo lending world (tests/performance_world.py: generate_lending's delayed default labels, a LightGBM model trained
on the first quarter) with covariate drift only, concept drift only (DriftSpec(concept=1) shifts the coefficients in
CONCEPT_SHIFT), or none: CBPE tracks realised performance under covariate drift within a stated bound and misses
concept drift; concept_drift flags the shifted features and nothing else, and flags nothing under covariate drift.
Late labels with their real arrival times; a second shape (regression, text keys with nulls, dates as strings); the
bad-input contracts; and one test that sends predictions through `mlw serve` and reads them back from the log."""
import datetime as dt
import json
import math

import numpy as np
import polars as pl
import pytest

from performance_world import SHIFTED, THRESHOLD, FEATURES, lending_windows
from mlops_workbench.core.errors import InvalidInput
from mlops_workbench.data.synthetic import CONCEPT_SHIFT, DriftSpec
from mlops_workbench.monitoring.performance import (ConceptDriftReport, concept_drift, estimate_performance, join_labels,
                                                    prediction_frame, realised_performance)

pytestmark = pytest.mark.timeout(600)
UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def worlds():
    "The lending world three ways; every prediction's label already known (labels joined as of the end of time)."
    out = {}
    for name, drift in (("none", None), ("covariate", DriftSpec(covariate=1.0)), ("concept", DriftSpec(concept=1.0))):
        w = lending_windows(drift)
        for k in ("reference", "current"): w[k] = w[k].with_columns(actual=pl.col("defaulted"))
        out[name] = w
    return out


def _se(metric: str, value: float, n: int, n_pos: int) -> float:
    "Sampling standard error of a realised metric on one chunk: binomial for accuracy, Hanley-McNeil for ROC AUC."
    if metric == "accuracy": return math.sqrt(value * (1 - value) / n)
    a, n_neg = value, n - n_pos
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return math.sqrt((a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg))


def _compare(w):
    est = estimate_performance(w["reference"], w["current"], threshold=THRESHOLD, every="1mo")
    real = realised_performance(w["current"], "binary", every="1mo", threshold=THRESHOLD)
    pos = w["current"].group_by(pl.col("at").dt.truncate("1mo").alias("window_start")).agg(pl.col("actual").sum().alias("n_pos"))
    return est.join(real, on="window_start", suffix="_realised").join(pos, on="window_start").sort("window_start")


def test_cbpe_tracks_realised_performance_under_covariate_drift(worlds):
    """Bound: |estimated - realised| <= 3 SE + 0.02 per monthly chunk (~3,300 rows). SE is the realised figure's own
    sampling error (the estimate is an expectation, the realised value one draw around it), 0.02 the calibration error
    CBPE inherits: the isotonic map is fitted on ~10,000 reference rows, and under covariate drift the model meets
    applicants (poorer, more 'islands', bigger loans) where its calibration was learned from few rows."""
    j = _compare(worlds["covariate"])
    assert j.height == 6 and j["calibrated"].all()
    for m in ("accuracy", "roc_auc"):
        for r in j.iter_rows(named=True):
            bound = 3 * _se(m, r[f"{m}_realised"], r["rows"], r["n_pos"]) + 0.02
            assert abs(r[m] - r[f"{m}_realised"]) <= bound, (m, r["window_start"], r[m], r[f"{m}_realised"], bound)
    # and the estimate moved with the drift: more defaults, so fewer correct 'no default' calls than on the reference
    ref_acc = realised_performance(worlds["covariate"]["reference"], "binary", every=None, threshold=THRESHOLD)["accuracy"][0]
    assert j["accuracy"].mean() < ref_acc - 0.05


def test_cbpe_does_not_see_concept_drift(worlds):
    "The scores do not move when only the relation does, so neither does the estimate; the realised figures do."
    j, calm = _compare(worlds["concept"]), _compare(worlds["none"])
    assert abs(j["accuracy"].mean() - calm["accuracy"].mean()) < 0.005  # the same inputs, the same estimate
    assert (j["accuracy"] - j["accuracy_realised"]).mean() > 0.015  # real accuracy fell
    assert (j["precision_realised"] - j["precision"]).mean() > 0.08  # and precision rose: more of the flagged default now


def test_concept_drift_flags_the_shifted_features_only(worlds):
    w = worlds["concept"]
    rep = concept_drift(w["reference"], w["current"], FEATURES, "binary")
    shifted = {SHIFTED[k] for k in CONCEPT_SHIFT}
    assert {"home_ownership", "income"} <= set(rep.changed) <= shifted, rep.features
    stable = {f["feature"] for f in rep.features if f["verdict"] == "stable"}
    assert set(FEATURES) - shifted <= stable
    assert rep.drifted
    back = ConceptDriftReport.from_dict(json.loads(json.dumps(rep.to_dict())))
    assert back == rep and "home_ownership" in back._repr_html_()


@pytest.mark.parametrize("name", ["covariate", "none"])
def test_no_concept_drift_is_flagged_without_one(worlds, name):
    w = worlds[name]
    rep = concept_drift(w["reference"], w["current"], FEATURES, "binary")
    assert rep.changed == [] and rep.performance != "worse", rep.features


def test_late_labels_with_their_arrival_times(worlds):
    """As of a day in the second half: defaults are known 30-180 days on, repayments only after 180, so the last
    month's labels are (nearly) all pending and the known ones are mostly defaults: coverage says how little to trust it."""
    w = worlds["none"]
    preds = w["current"].select("request_id", "at", "prediction", *FEATURES)
    labels = w["labels"].with_columns(request_id=pl.col("application_id").cast(pl.String))
    as_of = dt.datetime(2025, 12, 1, tzinfo=UTC)
    j = join_labels(preds.filter(pl.col("at") < as_of), labels, label="defaulted", labelled_at="label_timestamp", as_of=as_of, max_delay="180d")
    known = labels.filter(pl.col("label_timestamp") <= as_of)
    assert j.filter(pl.col("label_state") == "arrived").height == j.join(known, on="request_id").height
    assert j.filter(pl.col("label_state") == "overdue").height == 0  # nothing is older than 180 days yet
    perf = realised_performance(j, "binary", every="1mo", threshold=THRESHOLD)
    nov = perf.row(-1, named=True)
    assert nov["coverage"] < 0.15 and (nov["roc_auc"] is None or nov["labelled"] < 0.15 * nov["rows"])
    arrived = j.filter(pl.col("label_state") == "arrived")
    assert arrived["actual"].mean() > 0.5  # early labels are biased towards defaults
    # a year later everything has arrived; a broken label feed would show as overdue instead
    later = join_labels(preds, labels, label="defaulted", labelled_at="label_timestamp", as_of=dt.datetime(2026, 12, 1, tzinfo=UTC), max_delay="190d")
    assert later["label_state"].cast(pl.String).unique().to_list() == ["arrived"]
    feed_down = join_labels(preds, labels.clear(), label="defaulted", labelled_at="label_timestamp", as_of=dt.datetime(2026, 12, 1, tzinfo=UTC), max_delay="190d")
    assert feed_down["label_state"].cast(pl.String).unique().to_list() == ["overdue"]
    down = realised_performance(feed_down, "binary", every="1mo")
    assert down["coverage"].to_list() == [0.0] * 6 and down["roc_auc"].null_count() == 6 and set(down["note"]) == {"no labels yet"}


def _jobs(n=3000, seed=7):
    """A regression world with no id column: jobs at text site codes (3% null), the visit day as text; after day 60 a
    crew member saves less time (duration 6 per head instead of 10: concept drift on crew_size); the model knows the old rule."""
    r = np.random.default_rng(seed)
    base = dt.datetime(2025, 1, 1, tzinfo=UTC)
    at = [base + dt.timedelta(minutes=57 * i) for i in range(n)]
    crew_size, crew = r.integers(1, 6, n), r.choice(["alpha", "beta", "gamma"], n)
    after = np.array([(t - base).days >= 60 for t in at])
    site = [None if r.random() < 0.03 else f"site-{i:03d}" for i in r.integers(0, 30, n)]
    duration = 30 + np.where(after, 6, 10) * crew_size + 5 * (crew == "gamma") + r.normal(0, 3, n)
    preds = pl.DataFrame({"site_code": site, "visit_day": [t.strftime("%Y-%m-%d") for t in at], "crew_size": crew_size, "crew": crew,
                          "prediction": (30 + 10 * crew_size + 5 * (crew == "gamma")).astype(float), "at": at})
    arrives = r.random(n) > 0.1  # 10% of jobs never report back
    labels = pl.DataFrame({"site_code": site, "finished": [(t + dt.timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S") for t in at],
                           "duration": duration}).filter(pl.Series(arrives))
    return preds, labels, base


def test_second_shape_regression_by_text_key_and_time():
    preds, labels, base = _jobs()
    with pytest.raises(InvalidInput, match="column 'finished' is String, expected a datetime; parse it first"):
        join_labels(preds, labels, on="site_code", label="duration", label_time="finished")
    labels = labels.with_columns(pl.col("finished").str.to_datetime("%Y-%m-%d %H:%M:%S", time_zone="UTC"))
    j = join_labels(preds, labels, on="site_code", label="duration", label_time="finished", strategy="forward", tolerance="5m",
                    as_of=base + dt.timedelta(days=200), max_delay="7d")
    assert j.height == preds.height and j["at"].to_list() == preds["at"].to_list()  # the predictions' order is kept
    null_keys = j.filter(pl.col("site_code").is_null())
    assert null_keys.height > 0 and (null_keys["label_state"] == "overdue").all()  # a null key never matches
    arrived = j.filter(pl.col("label_state") == "arrived")
    assert 0.85 < arrived.height / j.height < 0.9
    perf = realised_performance(j, "regression", every="1w", by=["crew"])
    assert set(perf["crew"]) == {"alpha", "beta", "gamma"} and perf["coverage"].max() <= 1.0
    early, late = (perf.filter(pl.col("window_start") < base + dt.timedelta(days=d0), pl.col("window_start") >= base + dt.timedelta(days=d1))["rmse"].mean()
                   for d0, d1 in ((56, 0), (999, 63)))
    assert early < 4 and late > 8
    rep = concept_drift(arrived.filter(pl.col("at") < base + dt.timedelta(days=60)), arrived.filter(pl.col("at") >= base + dt.timedelta(days=60)),
                        ["crew_size", "crew", "site_code", "visit_day"], "regression")
    verdicts = {f["feature"]: f["verdict"] for f in rep.features}
    assert verdicts == {"crew_size": "changed", "crew": "stable", "site_code": "stable", "visit_day": "untestable"}, rep.features
    assert rep.metric == "rmse" and rep.performance == "worse"
    with pytest.raises(InvalidInput, match="the reference target 'actual' has .* class"):
        estimate_performance(arrived.with_columns(prediction=pl.lit(0.5)), arrived)


@pytest.mark.parametrize("case", ["empty_window", "label_missing", "key_types", "cbpe_multiclass", "unknown_task", "never_arrive"])
def test_bad_input(case):
    preds, labels, base = _jobs(400)
    labels = labels.with_columns(pl.col("finished").str.to_datetime(time_zone="UTC"))
    j = join_labels(preds, labels, on="site_code", label="duration", label_time="finished", strategy="forward", tolerance="5m")
    if case == "empty_window":
        assert realised_performance(j.clear(), "regression").select("rows", "rmse").row(0) == (0, None)
        with pytest.raises(InvalidInput, match="the current window has 0 labelled prediction"):
            concept_drift(j, j.clear(), ["crew_size"], "regression")
    elif case == "label_missing":
        with pytest.raises(InvalidInput, match="the labels: no column 'minutes'"):
            join_labels(preds, labels, on="site_code", label="minutes")
    elif case == "key_types":
        with pytest.raises(InvalidInput, match="key 'site_code' is String in the predictions and Int64 in the labels"):
            join_labels(preds, labels.with_columns(pl.col("site_code").str.slice(5).cast(pl.Int64)), on="site_code", label="duration")
    elif case == "cbpe_multiclass":
        mc = j.with_columns(actual=pl.col("crew"), prediction=pl.lit(0.4))
        with pytest.raises(InvalidInput, match="has 3 class\\(es\\) \\['alpha', 'beta', 'gamma'\\]; CBPE here estimates binary classifiers"):
            estimate_performance(mc, mc)
    elif case == "unknown_task":
        for f in (lambda: realised_performance(j, "ranking"), lambda: concept_drift(j, j, ["crew"], "ranking")):
            with pytest.raises(InvalidInput, match="task 'ranking' is unknown; pass one of binary, multiclass, regression"): f()
    else:
        none = join_labels(preds, labels.clear(), on="site_code", label="duration", label_time="finished", as_of=base + dt.timedelta(days=400), max_delay="30d")
        perf = realised_performance(none, "regression", every="1mo")
        assert set(none["label_state"]) == {"overdue"} and perf["coverage"].sum() == 0 and perf["rmse"].null_count() == perf.height


def test_predictions_through_the_gateway_come_back_as_a_frame(ws):
    "`mlw serve` logs real predictions (rows by site key, enriched from the online store); prediction_frame reads them back typed."
    import httpx
    from gateway_server import gateway
    from toy import jobs_world
    from mlops_workbench.features.online import materialize
    from mlops_workbench.registry.validation import load_run_model
    from mlops_workbench.security.keys import create_key
    run, sites = jobs_world(ws, base=dt.datetime.now(UTC) - dt.timedelta(days=200))
    materialize(ws, "site_stats")
    key = create_key(ws, "svc", ["predictor"], who="test").key
    rows = [{"site_code": sites[i % 12], "crew_size": 1 + i % 5, "crew": ["alpha", "beta", "gamma"][i % 3]} for i in range(19)]
    rows.append({"site_code": None, "crew_size": 2, "crew": "beta"})
    sent = []
    with gateway(ws.root, "job_duration/1", args=["--log_flush_s", "0.2"]) as (url, proc):
        for i in range(0, len(rows), 5):
            r = httpx.post(f"{url}/v1/models/job_duration/predict", json={"rows": rows[i:i + 5]}, headers={"X-API-Key": key}, timeout=30)
            assert r.status_code == 200, r.text
            sent += [(r.json()["request_id"], k, p["value"]) for k, p in enumerate(r.json()["predictions"])]
    pf = prediction_frame(ws, "job_duration")  # the gateway's SIGTERM drained the log
    assert pf.select("request_id", "row", "prediction").rows() == sent
    m = load_run_model(ws, run)
    assert set(m.features) <= set(pf.columns) and "site_code" in pf.columns  # the model's features, and the key sent
    assert pf.schema["crew_size"] == pl.Int64 and pf.schema["crew"] == pl.String and pf["site_code"][-1] is None
    assert pf["endpoint"].unique().to_list() == ["job_duration"] and pf["version"].unique().to_list() == [1]
    labels = pl.DataFrame({"request_id": [s[0] for s in sent], "row": [s[1] for s in sent], "minutes": [s[2] + 1.0 for s in sent]})
    j = join_labels(pf, labels, on=["request_id", "row"], label="minutes")
    perf = realised_performance(j, "regression", every="1d")
    assert perf["rows"].sum() == 20 and perf["mae"].to_list() == pytest.approx([1.0] * perf.height)
