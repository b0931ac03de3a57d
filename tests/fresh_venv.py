"""A fresh virtualenv holding exactly what a build's Dockerfile installs (`cicd.artifacts`): the serving lock and a wheel
of this checkout, both with --no-deps, and nothing from the system's site packages. NEEDS PyPI or pip's cache, and
about a minute; made once per test session (the `fresh_venv` fixture in conftest.py) and shared by the tests that serve
a bundle from it."""
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]


def make(folder: Path) -> SimpleNamespace:
    "Build the wheel, write the lock, make the venv and install both; its python, mlw, wheel, lock, pins and timings."
    import mlops_workbench
    from mlops_workbench.cicd.artifacts import write_lock
    timings, folder = {}, Path(folder)
    t0 = time.perf_counter()
    wheels = folder / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)], check=True,
                   capture_output=True)
    (whl,) = wheels.glob("mlops_workbench-*.whl")
    pins = write_lock(folder / "requirements.lock")
    timings["wheel and lock"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    py = venv / "bin" / "python"
    timings["venv"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    for args in (["-r", str(folder / "requirements.lock")], ["--find-links", str(wheels), "mlops-workbench==" + mlops_workbench.__version__]):
        p = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "-q", *args], env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    timings["pip install"] = time.perf_counter() - t0
    check = subprocess.run([str(py), "-c", "import mlops_workbench; print(mlops_workbench.__file__)"], capture_output=True, text=True, cwd=folder)
    assert str(venv) in check.stdout, check.stdout + check.stderr  # the venv's copy, not this checkout
    p = subprocess.run([str(py), "-m", "pip", "check"], capture_output=True, text=True, env=env)
    # the lock is closed: only mlops-workbench's own requirements outside the serving path (notebooks, dashboards) are absent
    assert [l for l in p.stdout.splitlines() if l.strip() and not l.startswith("mlops-workbench ")] == [], p.stdout[-3000:]
    return SimpleNamespace(python=py, mlw=venv / "bin" / "mlw", wheel=whl, lock=folder / "requirements.lock", pins=pins, timings=timings)
