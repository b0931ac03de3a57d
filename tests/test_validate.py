"""Data validation beyond the notebook's lessons: every rule kind passing and failing, every policy, YAML errors,
text files whose types change mid-file, and the streaming path on a file larger than the memory it is given."""
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap

import polars as pl
import pytest

from mlops_workbench.core.errors import Conflict, InvalidInput, NotFound
from mlops_workbench.data.rules import AllowedValues, Distribution, DType, Expression, Freshness, Length, NotNull, Range, Reference, RowCount, RuleSet, Regex, Rule, RULE_KINDS, Unique, lending_application_rules
from mlops_workbench.data.validate import reference_stats, validate
from mlops_workbench.data.synthetic import generate_lending

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def df():
    return pl.DataFrame({
        "id": [1, 2, 3, 4, 5, 6],
        "shop": ["a", "a", "b", "b", "c", "c"],
        "day": [1, 2, 1, 2, 1, 2],
        "amount": [10.0, 20.0, 30.0, 40.0, 50.0, None],
        "code": ["AB12", "CD34", "EF56", "GH78", "IJ90", "KL12"],
        "cat": pl.Series(["x", "y", "x", "y", "x", "y"], dtype=pl.Enum(["x", "y", "z"])),
        "ts": [dt.datetime(2025, 12, 31, h, tzinfo=dt.timezone.utc) for h in range(6)],
    })


def one(data, rule, **kw):
    "Validate `data` against a single rule; return (report, its result)."
    rep = validate(data, RuleSet("t", [rule], key="id" if "id" in data.collect_schema() else None), now=NOW, **kw)
    return rep, rep.results[0]


# (passing rule, failing rule, rows the failing rule flags) for every row-level kind
ROW_CASES = {
    "dtype": (DType("amount", "f64"), DType("code", "i64"), 6),
    "not_null": (NotNull("id"), NotNull("amount"), 1),
    "range": (Range("amount", min=0, max=100), Range("amount", min=15, max=45), 2),
    "allowed_values": (AllowedValues("cat", ["x", "y"]), AllowedValues("shop", ["a", "b"]), 2),
    "unique": (Unique("id"), Unique("shop"), 6),
    "regex": (Regex("code", r"[A-Z]{2}\d{2}"), Regex("code", r"[A-Z]{2}[0-3]\d"), 3),
    "length": (Length("code", min=4, max=4), Length("code", max=3), 6),
    "expression": (Expression(name="small", sql="amount < 100"), Expression(name="small", expr=pl.col("amount") < 25), 3),
    "reference": (Reference("shop", "shops", reference_column="name"), Reference("shop", "few_shops", reference_column="name"), 2),
}


@pytest.mark.parametrize("lazy", [False, True], ids=["DataFrame", "LazyFrame"])
@pytest.mark.parametrize("kind", list(ROW_CASES))
def test_row_rule_passes_and_fails(df, kind, lazy):
    ok, bad, n = ROW_CASES[kind]
    df = df.lazy() if lazy else df
    refs = {"shops": pl.LazyFrame({"name": ["a", "b", "c"]}), "few_shops": pl.LazyFrame({"name": ["a", "b", "q"]})}
    rep, res = one(df, ok, references=refs)
    assert (rep.status, res.passed, res.failed) == ("passed", True, 0), res
    rep, res = one(df, bad, references=refs)
    assert (rep.status, res.passed, res.failed, res.kind) == ("blocked", False, n, kind), res
    assert 0 < len(res.examples) <= 5
    assert rep.failures.collect().height == n


def test_every_kind_has_a_case():
    assert set(ROW_CASES) | {"row_count", "freshness", "distribution"} == set(RULE_KINDS)


def test_batch_rules_pass_and_fail(df):
    assert one(df, RowCount(min=1, max=6))[1].passed
    rep, res = one(df, RowCount(min=7))
    assert (rep.status, res.passed, res.failed, res.observed) == ("blocked", False, 1, {"rows": 6})
    assert one(df, Freshness("ts", "1d"))[1].passed
    rep, res = one(df, Freshness("ts", "1h"))
    assert not res.passed and "max age 1h" in res.message and res.observed["newest"].startswith("2025-12-31T05:00")
    stats = reference_stats(df, ["amount", "shop"])
    assert one(df, Distribution("amount", "ref"), reference_stats={"ref": stats})[1].passed
    shifted = df.with_columns(pl.col("amount") * 2, pl.lit("a").alias("shop"))
    rep, res = one(shifted, Distribution("amount", "ref", policy="warn"), reference_stats={"ref": stats})
    assert (rep.status, res.passed) == ("warned", False) and res.observed["mean"]["change_in_std"] > 1
    rep, res = one(shifted, Distribution("shop", "ref", tolerance=0.2, policy="warn"), references={"ref": df.lazy()})
    assert not res.passed and set(res.observed["moved"]) == {"a", "b", "c"}


def test_policies(df):
    rules = [Range("amount", max=35, policy="warn"), Regex("code", r"[A-Z]{2}[0-3]\d", policy="quarantine"),
             NotNull("amount", policy="quarantine")]
    rep = validate(df, RuleSet("t", rules, key="id"))
    assert rep.status == "quarantined" and rep.rows_failed == 4 and rep.rows_quarantined == 4
    q = rep.quarantined.collect().sort("id")
    assert q["id"].to_list() == [3, 4, 5, 6]
    assert q["_failed_rules"].to_list() == [["code_regex"], ["amount_range", "code_regex"], ["amount_range", "code_regex"], ["amount_not_null"]]
    assert rep.passed.collect()["id"].to_list() == [1, 2]  # the warn rule's row 3 is quarantined by the regex, not by the warning
    warned = validate(df, RuleSet("t", rules[:1]))
    assert warned.status == "warned" and warned.passed.collect().height == 6
    blocked = validate(df, RuleSet("t", [NotNull("amount")]))
    assert blocked.status == "blocked"
    with pytest.raises(Conflict, match="blocked this batch .amount_not_null: 1 of 6 rows"): blocked.passed
    with pytest.raises(Conflict): blocked.quarantined
    assert validate(df, RuleSet("t", [NotNull("amount", max_failed_share=0.2)])).status == "passed"


def test_compound_uniqueness():
    d = pl.DataFrame({"shop": ["a", "a", "b", "b", "a", None, None], "day": [1, 2, 1, 1, 1, 3, 3], "v": range(7)})
    rep = validate(d, RuleSet("t", [Unique(["shop", "day"], policy="quarantine")]))
    lazy = validate(d.lazy(), RuleSet("t", [Unique(["shop", "day"], policy="quarantine")]))
    assert rep.to_dict() == lazy.to_dict()
    res = rep.results[0]
    assert (res.name, res.failed, res.observed) == ("shop_day_unique", 4, {"duplicated_keys": 2})
    assert sorted(rep.quarantined.collect()["v"].to_list()) == [0, 2, 3, 4]  # null keys never count as duplicates
    assert rep.passed.collect()["v"].to_list() == [1, 5, 6]  # input order kept


def test_yaml_round_trip_and_errors(tmp_path):
    rs = RuleSet("applications", lending_application_rules(), key=["application_id"])
    path = tmp_path / "rules.yaml"
    rs.to_yaml(path)
    assert RuleSet.from_yaml(path) == rs and RuleSet.from_yaml(str(path)).hash == rs.hash
    bad = {
        "kind: not_a_kind": "kind 'not_a_kind' is unknown",
        "kind: range\n    min: 1": "field 'column' is missing",
        "kind: range\n    column: a\n    min: '1'": "field 'min' is '1'",
        "kind: range\n    column: a\n    min: 1\n    max: 0": "field 'max' is 0; expected a value >= min 1",
        "kind: regex\n    column: a\n    pattern: '[a-'": "field 'pattern'",
        "kind: expression\n    name: e\n    sql: 'a >< b ))'": "field 'sql'",
        "kind: not_null\n    column: a\n    policy: drop": "field 'policy' is 'drop'",
        "kind: not_null\n    column: a\n    max_failed_share: 5%": "field 'max_failed_share' is '5%'",
        "kind: distribution\n    column: a\n    reference: r\n    tolerance: high": "field 'tolerance' is 'high'",
        "kind: freshness\n    column: t\n    max_age: soon": "field 'max_age' is 'soon'",
        "kind: row_count\n    min: 1\n    policy: quarantine": "use 'block' or 'warn'",
        "kind: dtype\n    column: a\n    dtype: decimal128": "field 'dtype' is 'decimal128'",
        "kind: not_null\n    colum: a": "field 'colum' is unknown",
        "kind: expression\n    name: e\n    expr: 'pl.col(\"a\") > 1'": "write the check as 'sql'",
    }
    for body, message in bad.items():
        with pytest.raises(InvalidInput, match="rule") as e: RuleSet.from_yaml(f"name: t\nrules:\n  - {body}\n")
        assert message in str(e.value), (body, str(e.value))
    for text, message in [("name: t\nrules: {a: 1}", "a list 'rules'"), ("name: t\nrules:\n  - 3", "rule #1 is 3"),
                          ("name: t\nrules: []\nowner: me", "unknown field(s) owner"), ("rules: [", "not valid YAML")]:
        with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")): RuleSet.from_yaml(text)
    with pytest.raises(NotFound, match="rule set file .* does not exist"): RuleSet.from_yaml(tmp_path / "missing.yaml")


def test_schema_errors_before_reading(tmp_path):
    "A rule naming a missing column fails on the schema: the scan of a file that is not there is never collected."
    lf = pl.LazyFrame(schema={"a": pl.Int64, "t": pl.String})
    for rule, message in [(NotNull("b"), "column 'b' is not in the data"), (Range("t", min=1), "column 't' is str"),
                          (Freshness("a", "1d"), "freshness needs a date or datetime"),
                          (Expression(name="e", sql="b > 1"), "column 'b' is not in the data"),
                          (Distribution("a", "ref"), "reference 'ref' was not passed")]:
        with pytest.raises(InvalidInput, match=f"rule set 't': rule .*{message}"): validate(lf, RuleSet("t", [rule]))
    with pytest.raises(InvalidInput, match="key column 'id' is not in the data"): validate(lf, RuleSet("t", [], key="id"))
    with pytest.raises(InvalidInput, match="pass a polars DataFrame"): validate([1, 2], RuleSet("t", []))
    with pytest.raises(InvalidInput, match="the data cannot be read"): validate(pl.scan_parquet(tmp_path / "nope.parquet"), RuleSet("t", []))


def test_type_change_mid_file(tmp_path):
    "Numbers, then text: inference fails part-way (a clear error); read as text, the dtype rule quarantines the bad rows."
    path = tmp_path / "orders.csv"
    rows = [f"{i},{i * 1.5},2025-01-{1 + i % 28:02d}" for i in range(300)] + ["300,n/a,2025-01-02", '301,"12,50",2025-01-03', "302,7,2025-13-01"]
    path.write_text("id,amount,day\n" + "\n".join(rows) + "\n")
    rs = RuleSet("orders", [DType("id", "i64"), DType("amount", "f64", policy="quarantine"), DType("day", "date", policy="quarantine")], key="id")
    with pytest.raises(InvalidInput, match="reading the data failed .*read it as text"): validate(pl.scan_csv(path), rs)
    rep = validate(pl.scan_csv(path, infer_schema=False), rs)
    assert rep.status == "quarantined" and rep.rows == 303
    assert {r.name: r.failed for r in rep.results} == {"id_dtype": 0, "amount_dtype": 2, "day_dtype": 1}
    q = rep.quarantined.collect().sort("id")
    assert q.schema["amount"] == pl.String and q["amount"].to_list() == ["n/a", "12,50", "7"]
    assert q["_failed_rules"].to_list() == [["amount_dtype"], ["amount_dtype"], ["day_dtype"]]
    ok = rep.passed.collect()
    assert ok.schema == pl.Schema({"id": pl.Int64, "amount": pl.Float64, "day": pl.Date}) and ok.height == 300


def test_mixed_types_in_text():
    "One text column holding ints, floats, words, dates and blanks: each target dtype flags what it cannot hold."
    d = pl.DataFrame({"v": ["1", " 2 ", "3.5", "abc", "2025-01-01", "", None, "1e3", "true"]})
    fails = {t: validate(d, RuleSet("t", [DType("v", t)])).results[0].failed for t in ("i64", "f64", "date", "bool", "str")}
    assert fails == {"i64": 6, "f64": 4, "date": 7, "bool": 6, "str": 0}
    strict = validate(pl.DataFrame({"v": [1, 2]}), RuleSet("t", [DType("v", "f64", coerce=False)])).results[0]
    assert strict.failed == 2 and strict.observed == {"dtype": "i64"}
    lossy = validate(pl.DataFrame({"v": [1.0, 1.5, 300.0]}), RuleSet("t", [DType("v", "i64")])).results[0]
    assert lossy.failed == 1 and lossy.examples == [{"v": 1.5}]
    assert validate(pl.DataFrame({"v": [1.0, 1.5, 300.0]}), RuleSet("t", [DType("v", "u8")])).results[0].failed == 2


def test_demo_text_pipeline_matches_answer_key(tmp_path):
    "The preset on the demo CSV (read as text) quarantines exactly the applications the answer key lists."
    d = generate_lending(5_000, seed=7, bad_share=0.06)
    path = d.write(tmp_path, format="csv")["applications"]
    rep = validate(pl.scan_csv(path, infer_schema=False), RuleSet("applications", lending_application_rules(), key="application_id"), now=NOW)
    key = d.bad_records.filter(pl.col("table") == "applications")
    assert set(rep.quarantined.collect()["application_id"].cast(pl.Int64)) == set(key["application_id"])
    assert json.loads(json.dumps(rep.to_dict()))["rows"] == 5_000


def test_record_in_one_transaction(ws, df):
    rep = validate(df, RuleSet("t", [NotNull("amount", policy="warn"), RowCount(min=1)]))
    rid = rep.record(ws, "orders", 3, output_version=1)
    import sqlalchemy as sa
    from mlops_workbench.core.metadata import quality_metrics, validation_reports
    with ws.metadata.begin() as c:
        r = c.execute(sa.select(validation_reports).where(validation_reports.c.id == rid)).mappings().one()
        m = {(x.metric, x.column): x.value for x in c.execute(sa.select(quality_metrics).where(quality_metrics.c.version == 3))}
    assert (r["status"], r["rows_failed"], r["output_version"], r["quarantine_version"]) == ("warned", 1, 1, None)
    assert m[("rows", "")] == 6 and m[("null_rate", "amount")] == pytest.approx(1 / 6)
    assert m[("rule_failure_rate", "amount_not_null")] == pytest.approx(1 / 6) and m[("rule_failure_rate", "row_count")] == 0
    with pytest.raises(InvalidInput, match="version '3'"): rep.record(ws, "orders", "3")
    with ws.metadata.begin() as c: assert c.execute(sa.select(sa.func.count()).select_from(validation_reports)).scalar() == 1


STREAM_CHILD = textwrap.dedent("""
    import resource, sys, polars as pl
    from mlops_workbench.data.rules import *
    from mlops_workbench.data.validate import validate
    src, out, quarantine = sys.argv[1:4]
    rs = RuleSet("wide", [DType("id", "i64"), NotNull("a", policy="quarantine"), Range("b", min=-4, max=4, policy="quarantine"),
                          Regex("s", "[a-z]+-[0-9]+", policy="quarantine"), Length("pad", max=40, policy="warn"),
                          Expression(name="a_le_b", sql="a <= b + 10", policy="warn"), RowCount(min=1)], key="id")
    rep = validate(pl.scan_parquet(src), rs)
    rep.sink_parquet(out, quarantine)
    print(rep.rows, rep.rows_quarantined, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
""")


def test_streaming_passed_rows_to_parquet(tmp_path):
    "Validate and sink a parquet file whose rows take far more memory than the child process ever holds."
    # 24M rows (~5 GB in memory): the streaming engine's in-flight morsels take a roughly constant 1-2 GB here (2.1 GB
    # seen on a busy run), so with 16M rows a fresh-clone CI run came within 63% of the in-memory size; a bigger
    # table keeps the claim (memory far below the rows' size) clear of that noise
    n = 24_000_000
    src = tmp_path / "wide.parquet"
    pl.LazyFrame({"id": pl.int_range(n, eager=True)}).with_columns(
        a=pl.when(pl.col("id") % 1000 == 0).then(None).otherwise((pl.col("id") % 1000).cast(pl.Float64)),
        b=(pl.col("id") * 7 % 1001 - 500) / 100,
        s=pl.when(pl.col("id") % 777 == 0).then(pl.lit("bad")).otherwise(pl.format("row-{}", pl.col("id"))),
        pad=pl.format("a-text-column-to-make-rows-wider-{}", pl.col("id") % 97),
        **{f"p{k}": pl.format("{}-padding-column-with-unique-text-number-" + str(k), pl.col("id") * (2 * k + 1)) for k in range(3)},
    ).sink_parquet(src)
    data = pl.scan_parquet(src)
    in_memory = data.head(200_000).collect().estimated_size() * n / 200_000  # ~3.3 GB; the file is ~65 MB
    expected_q = data.filter(pl.col("a").is_null() | (pl.col("b").abs() > 4) | (pl.col("s") == "bad")).select(pl.len()).collect().item()
    out, quarantine = tmp_path / "ok.parquet", tmp_path / "q.parquet"
    # smaller morsels than polars' default 100k rows: with 2 threads the engine otherwise keeps ~1 GB of
    # in-flight morsels of these wide rows, whatever the file size (measured flat from 8M to 24M rows)
    env = {**os.environ, "POLARS_IDEAL_MORSEL_SIZE": "10000"}
    res = subprocess.run([sys.executable, "-c", STREAM_CHILD, str(src), str(out), str(quarantine)], capture_output=True,
                         text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr
    rows, quarantined, peak = map(int, res.stdout.split())
    assert (rows, quarantined) == (n, expected_q) and 0 < expected_q < n
    assert pl.scan_parquet(out).select(pl.len()).collect().item() == n - expected_q
    assert pl.scan_parquet(quarantine).select(pl.len()).collect().item() == expected_q
    assert pl.scan_parquet(out).select(pl.col("id").diff().min()).collect().item() > 0  # input order kept
    assert peak < 0.6 * in_memory, f"peak RSS {peak / 1e6:.0f} MB against {in_memory / 1e6:.0f} MB of rows in memory"


# ---------------------------------------------------------------- validating a dataset version again replaces, never adds

SALES_RULES = """name: sales
key: [store, day, product]
rules:
  - {kind: not_null, column: units, policy: quarantine}
  - {kind: range, column: revenue, min: 0.01, policy: quarantine}
  - {kind: regex, column: day, pattern: '\\d\\d\\.\\d\\d\\.\\d{4}', policy: quarantine}
  - {kind: allowed_values, column: product, values: [Brot, Käse, Milch], policy: warn}
"""


def _week(tmp_path, name: str, day: str) -> str:
    "A weekly `;`-delimited latin-1 sales export: no id, text keys, dates as text, gaps in `units`, `revenue` as the target."
    rows = [f"Zürich;{day};Käse;12;54.5", f"Genève;{day};Brot;;0.0", f"Köln;{day};Käse;9;40.5", f"Malmö;2025-{day[3:5]}-{day[:2]};Brot;4;18.0",
            f"Köln;{day};Milch;;7.5", f"Zürich;{day};Bier;3;9.0"]
    (tmp_path / f"{name}.csv").write_bytes(("store;day;product;units;revenue\n" + "\n".join(rows) + "\n").encode("latin-1"))
    return str(tmp_path / f"{name}.csv")


def test_validating_a_version_again_replaces_its_rows_report_and_metrics(ws, tmp_path):
    import sqlalchemy as sa
    from mlops_workbench.core.metadata import quality_metrics, validation_reports
    from mlops_workbench.core.storage import read_dataset, dataset_version
    from mlops_workbench.data.sources import CsvSource
    from mlops_workbench.data.ingest import ingest
    from mlops_workbench.data.quality import validate_dataset, validation_history, quality_history
    for name, day in [("w10", "03.03.2025"), ("w11", "10.03.2025")]:
        ingest(ws, "sales", CsvSource(_week(tmp_path, name, day), delimiter=";", encoding="latin-1"), mode="overwrite")
    rules = RuleSet.from_yaml(SALES_RULES)
    runs = [validate_dataset(ws, "sales", rules, version=v) for v in (0, 1, 0, 1, 1)]
    assert [(r.status, r.rows, r.rows_quarantined, r.replaced) for r in runs] == \
           [("quarantined", 6, 3, 0), ("quarantined", 6, 3, 0), ("quarantined", 6, 3, 1), ("quarantined", 6, 3, 1), ("quarantined", 6, 3, 1)]
    held = read_dataset(ws, "sales_quarantine").collect()
    assert held.group_by("_source_version").len().sort("_source_version").rows() == [(0, 3), (1, 3)]
    assert sorted(held.filter(pl.col("_source_version") == 0)["store"]) == ["Genève", "Köln", "Malmö"]
    assert sorted((r["version"], r["rows_quarantined"]) for r in validation_history(ws, "sales")) == [(0, 3), (1, 3)]
    for metric in ("rows_quarantined", "rows_failed", "rows", "quarantine_rate"):
        assert quality_history(ws, "sales", metric).sort("version")["version"].to_list() == [0, 1], metric
    assert quality_history(ws, "sales", "rule_failure_rate", "units_not_null")["value"].to_list() == [2 / 6, 2 / 6]
    assert read_dataset(ws, "sales_validated").collect().height == 3
    # a fixed rule: v0 validated again holds only what the new rules quarantine, and v1's rows stay as they were
    fixed = RuleSet("sales", [r for r in rules.rules if r.name != "day_regex"], key=rules.key)
    rerun = validate_dataset(ws, "sales", fixed, version=0)
    held = read_dataset(ws, "sales_quarantine").collect()
    assert (rerun.rows_quarantined, held.group_by("_source_version").len().sort("_source_version").rows()) == (2, [(0, 2), (1, 3)])
    q = dataset_version(ws, "sales_quarantine")
    assert (q.operation, q.lineage["steps"][-1]) == ("overwrite", {"kind": "replace", "source_version": 0, "rows_removed": 3})
    with ws.metadata.begin() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(validation_reports)).scalar() == 2
        names = {r.column for r in c.execute(sa.select(quality_metrics.c.column).where(quality_metrics.c.version == 0, quality_metrics.c.metric == "rule_failure_rate"))}
    assert "day_regex" not in names  # the earlier run's rule went with its report
    # a rerun that blocks writes nothing: the earlier rows stay, its report replaces the earlier one
    blocked = validate_dataset(ws, "sales", RuleSet("sales", [NotNull("units")]), version=1)
    assert blocked.status == "blocked" and read_dataset(ws, "sales_quarantine").collect().height == 5
    assert [r["status"] for r in validation_history(ws, "sales") if r["version"] == 1] == ["blocked"]
    assert validate_dataset(ws, "sales", rules, version=1).replaced == 1  # and the next good run still replaces them
    assert read_dataset(ws, "sales_quarantine").collect().group_by("_source_version").len().sort("_source_version").rows() == [(0, 2), (1, 3)]
    # a quarantine shared with another dataset cannot tell their versions apart: replacing in it is refused
    ingest(ws, "branch", CsvSource(_week(tmp_path, "b", "03.03.2025"), delimiter=";", encoding="latin-1"))
    validate_dataset(ws, "branch", rules, quarantine="sales_quarantine")
    with pytest.raises(Conflict, match=r"quarantine dataset 'sales_quarantine' also holds rows of \['branch'\], so the rows of 'sales' v0 cannot be told apart"):
        validate_dataset(ws, "sales", rules, version=0)


def test_validate_step_run_twice_in_a_pipeline(ws, tmp_path):
    "The packaged validate_data notebook with a YAML rule set, run twice by the pipeline runner: the second run replaces."
    from pathlib import Path
    from mlops_workbench.pipelines import runner
    from mlops_workbench.core.storage import read_dataset
    from mlops_workbench.data.sources import CsvSource
    from mlops_workbench.data.ingest import ingest
    from mlops_workbench.data.quality import validation_history
    ingest(ws, "sales", CsvSource(_week(tmp_path, "w10", "03.03.2025"), delimiter=";", encoding="latin-1"))
    (tmp_path / "sales_rules.yaml").write_text(SALES_RULES, encoding="utf-8")
    nb = Path(runner.__file__).parent / "validate_data.ipynb"
    spec = runner.PipelineSpec.from_yaml(f"name: check_sales\nparameters: {{rules: ''}}\nsteps:\n  validate:\n    notebook: {nb}\n"
                                         "    parameters: {dataset: sales, rules: '${params.rules}'}\n")
    runs = [runner.run_pipeline(ws, spec, {"rules": str(tmp_path / "sales_rules.yaml")}, progress=False) for _ in range(2)]
    for r in runs: r.raise_for_status()
    outputs = [r.step("validate").outputs for r in runs]
    assert [(o["status"], o["rows_quarantined"], o["replaced"]) for o in outputs] == [("quarantined", 3, 0), ("quarantined", 3, 1)]
    assert read_dataset(ws, "sales_quarantine").collect().height == 3 and len(validation_history(ws, "sales")) == 1
