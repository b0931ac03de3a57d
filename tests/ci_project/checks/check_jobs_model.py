"The project's unit checks: its helpers, and the jobs dataset in the workspace CI runs against (MLW_HOME)."
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from jobs_model import expected_minutes, visit_weekday  # noqa: E402


def test_visit_weekday_reads_text_dates():
    assert visit_weekday("2025-03-04") == "Tue"


def test_expected_minutes_grows_with_the_crew():
    assert expected_minutes(3) > expected_minutes(1)
    with pytest.raises(ValueError, match="at least 1"): expected_minutes(0)


def test_the_workspace_has_jobs():
    from mlops_workbench.core.storage import read_dataset
    from mlops_workbench.core.workspace import Workspace
    jobs = read_dataset(Workspace.open(), "jobs").collect()
    assert jobs.height > 100 and {"site_code", "visit_day", "crew", "duration"} <= set(jobs.columns)
