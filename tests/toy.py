"""The small tabular problem the training and registry tests share: `from toy import toy` (pytest puts `tests/` on `sys.path`)."""
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
