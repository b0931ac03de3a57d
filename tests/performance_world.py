"""The demo lending world as a monitoring problem, shared by tests/test_performance_monitoring.py and bench/cbpe_nannyml.py:
features per application (customer attributes, the loan, and two transaction features computed from the transactions
table), a LightGBM model trained on the first quarter, out-of-sample predictions for the rest of the first half (the
reference) and the second half (current, where `generate_lending`'s drift starts), with the delayed default labels."""
import datetime as dt

import numpy as np
import polars as pl

from mlops_workbench.data.synthetic import RISKY_MERCHANTS, DriftSpec, generate_lending

FEATURES = ["income", "age", "credit_score", "employment_years", "home_ownership", "region", "amount", "term_months",
            "interest_rate", "purpose", "channel", "tx_24h", "risky_share"]
# the features carrying generate_lending's CONCEPT_SHIFT coefficients: rent (a home_ownership level), income_z, risky_share, tx_24h
SHIFTED = {"rent": "home_ownership", "income_z": "income", "risky_share": "risky_share", "tx_24h": "tx_24h"}
THRESHOLD = 0.2  # a lender's cut-off for a ~10% default rate


def lending_frame(drift: DriftSpec | None, n: int = 40_000, seed: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    "(one row per application: features, `defaulted`, `label_timestamp`; the labels table)."
    d = generate_lending(n, seed=seed, drift=drift)
    apps = d.applications.join(d.customers, on="customer_id", how="left")
    tx = d.transactions.select("customer_id", pl.col("event_timestamp").alias("tx_at"),
                               pl.col("merchant_category").cast(pl.String).is_in(list(RISKY_MERCHANTS)).alias("risky"))
    recent = (apps.select("application_id", "customer_id", "event_timestamp").join(tx, on="customer_id")
              .filter(pl.col("tx_at") < pl.col("event_timestamp"), pl.col("tx_at") >= pl.col("event_timestamp") - pl.duration(days=35))
              .group_by("application_id").agg(tx_24h=(pl.col("tx_at") >= pl.col("event_timestamp") - pl.duration(days=1)).sum().cast(pl.Int64),
                                              risky_share=pl.col("risky").mean()))
    df = (apps.join(recent, on="application_id", how="left").with_columns(pl.col("tx_24h").fill_null(0), pl.col("risky_share").fill_null(0.0))
          .join(d.labels, on="application_id")
          .with_columns([pl.col(c).cast(pl.String) for c in ("home_ownership", "region", "purpose", "channel")])
          .sort("event_timestamp"))
    return df, d.labels


def _matrix(df: pl.DataFrame):
    return df.select(FEATURES).with_columns(pl.col(pl.String).cast(pl.Categorical)).to_pandas()


def lending_windows(drift: DriftSpec | None, n: int = 40_000, seed: int = 3) -> dict:
    """Train on the first quarter; predict the second (reference) and the second half (current); return both windows
    shaped like prediction_frame's output (request_id, at, prediction, features) with `defaulted` and `label_timestamp`."""
    import lightgbm as lgb
    df, labels = lending_frame(drift, n, seed)
    t0, t1 = df["event_timestamp"].min(), df["event_timestamp"].max()
    q1, mid = t0 + (t1 - t0) / 4, t0 + (t1 - t0) / 2
    train = df.filter(pl.col("event_timestamp") < q1)
    m = lgb.LGBMClassifier(n_estimators=150, learning_rate=0.05, num_leaves=15, min_child_samples=50, verbose=-1, n_jobs=2)
    m.fit(_matrix(train), train["defaulted"].to_numpy())
    def scored(part):
        return part.with_columns(prediction=pl.Series(m.predict_proba(_matrix(part))[:, 1]), at=pl.col("event_timestamp"),
                                 request_id=pl.col("application_id").cast(pl.String))
    return dict(reference=scored(df.filter(pl.col("event_timestamp") >= q1, pl.col("event_timestamp") < mid)),
                current=scored(df.filter(pl.col("event_timestamp") >= mid)), labels=labels, mid=mid, model=m)
