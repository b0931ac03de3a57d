"The sample project's own code: small helpers its checks and notebooks use."
import datetime as dt


def visit_weekday(visit_day: str) -> str:
    "The weekday of a visit day written as text ('2025-03-04' -> 'Tue')."
    return dt.date.fromisoformat(visit_day).strftime("%a")


def expected_minutes(crew_size: int) -> float:
    "The planning rule of thumb the model should roughly agree with."
    if crew_size < 1: raise ValueError(f"crew_size {crew_size} must be at least 1")
    return 30.0 + 10.0 * crew_size
