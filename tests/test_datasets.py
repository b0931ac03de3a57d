"""Demo data beyond the notebook's lessons: a million rows, files on disk, a write that fails half-way."""
import polars as pl
import pytest

from mlops_workbench.core.errors import InvalidInput
from mlops_workbench.data.synthetic import generate_lending, DriftSpec, MAX_TX_PER_APPLICATION


@pytest.fixture(scope="module")
def small():
    return generate_lending(5_000, seed=3, bad_share=.04)


def test_million_rows_deterministic():
    "1M applications generate, with the documented table sizes, and a second run is identical."
    a = generate_lending(1_000_000, seed=5, drift=DriftSpec(covariate=.5, concept=.5), bad_share=.01)
    sizes = {k: v.height for k, v in a.tables.items()}
    assert sizes["applications"] == 1_000_000
    assert sizes["customers"] == 333_333
    assert sizes["labels"] == 1_000_000 - 2_000  # 20% of the 10,000 defects are duplicate rows
    assert 3 * 10**6 < sizes["transactions"] < 4.5 * 10**6 <= MAX_TX_PER_APPLICATION * 10**6
    assert a.bad_records.height == 10_000
    assert a.transactions["transaction_id"].is_unique().all()
    b = generate_lending(1_000_000, seed=5, drift=DriftSpec(covariate=.5, concept=.5), bad_share=.01)
    for k in a.tables: assert a.tables[k].equals(b.tables[k]), k
    assert a.bad_records.equals(b.bad_records)


def test_parquet_round_trip(small, tmp_path):
    paths = small.write(tmp_path)
    for k, df in small.tables.items(): assert pl.read_parquet(paths[k]).equals(df), k


def test_csv_round_trip(tmp_path):
    "Clean data written as CSV reads back to the same values (categoricals come back as text)."
    d = generate_lending(3_000, seed=4)
    paths = d.write(tmp_path / "out", format="csv")
    for k, df in d.tables.items():
        back = pl.read_csv(paths[k], try_parse_dates=True).cast(df.schema)
        assert back.equals(df), k


def test_csv_keeps_raw_amounts(small, tmp_path):
    "Mistyped amounts reach the CSV as the text the answer key lists."
    paths = small.write(tmp_path, format="csv")
    raw = pl.read_csv(paths["applications"], infer_schema_length=None)
    assert raw.schema["amount"] == pl.Utf8
    bad = small.bad_records.filter(kind="bad_type").select("application_id", "value")
    got = raw.join(bad, on="application_id").unique("application_id")  # a duplicated row appears twice
    assert got.height == bad.height and (got["amount"] == got["value"]).all()


def test_failed_write_leaves_no_half_file(small, tmp_path, monkeypatch):
    "A writer dying half-way leaves neither a partial file nor a temp file, and keeps an earlier complete file."
    small.write(tmp_path)
    before = (tmp_path / "customers.parquet").read_bytes()
    def broken(self, file, *args, **kw):
        with open(file, "wb") as f: f.write(b"PAR1 half a file")
        raise OSError("disk full")
    monkeypatch.setattr(pl.DataFrame, "write_parquet", broken)
    with pytest.raises(OSError, match="disk full"): small.write(tmp_path)
    assert (tmp_path / "customers.parquet").read_bytes() == before
    fresh = tmp_path / "fresh"
    with pytest.raises(OSError): small.write(fresh)
    assert list(fresh.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "applications.parquet", "customers.parquet", "labels.parquet", "transactions.parquet"]


def test_write_refuses_before_writing(small, tmp_path):
    with pytest.raises(InvalidInput, match="format 'json' is not supported"): small.write(tmp_path / "x", format="json")
    assert not (tmp_path / "x").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidInput, match="is a file"): small.write(tmp_path / "file")
