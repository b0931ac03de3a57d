"""What every notebook, dashboard kernel and pipeline step pays before its first line: importing the API.

Run: .venv/bin/python bench/import_time.py [--repeat 7] [--ref GIT_REV]
Each figure is the median wall-clock time of a fresh interpreter (`python -c ...`, so no module is cached in the
process), next to two baselines measured the same way in this run: the bare interpreter, and the libraries a
workbench notebook imports anyway (polars, numpy, sqlalchemy). `--ref` measures `import mlops_workbench.all` at
another commit too (run inside a temporary git worktree, whose package `python -c` then imports first), for a before/after in one run. The largest
cumulative imports (`python -X importtime`) say where the time goes. Compare ratios: timings on shared VMs swing.
"""
import argparse, re, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLW = str(Path(sys.executable).parent / "mlw")


def timed(argv, cwd=ROOT, repeat=7) -> float:
    "Median seconds of `argv` run in `cwd` `repeat` times (after one untimed warm-up that fills the OS file cache)."
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def top_imports(code: str, cwd=ROOT, n=8) -> list[tuple[float, str]]:
    "The `n` largest cumulative import times (seconds, module) of `code` in a fresh interpreter in `cwd`."
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=cwd, check=True, capture_output=True, text=True).stderr
    rows = [(int(m[1]) / 1e6, m[2].strip()) for m in re.finditer(r"import time:\s+\d+ \|\s+(\d+) \|(.*)", err)]
    # a module's cumulative time includes its children: show top-level entries of the tree (least indented)
    depth = lambda name: len(name) - len(name.lstrip())
    outer = [(t, m.strip()) for t, m in rows if depth(m) <= 3]
    return sorted(outer, reverse=True)[:n]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per figure (median reported)")
    ap.add_argument("--ref", help="git revision to measure `import mlops_workbench.all` at too (e.g. a commit before a change)")
    a = ap.parse_args()
    py = sys.executable
    rows = [("python -c pass (interpreter)", timed([py, "-c", "pass"], repeat=a.repeat)),
            ("import polars, numpy, sqlalchemy (a notebook's floor)", timed([py, "-c", "import polars, numpy, sqlalchemy"], repeat=a.repeat)),
            ("import mlops_workbench.all", timed([py, "-c", "import mlops_workbench.all"], repeat=a.repeat)),
            ("mlw --help", timed([MLW, "--help"], repeat=a.repeat))]
    if a.ref:
        tmp = Path(tempfile.mkdtemp(prefix="mlw-ref-"))
        try:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tmp / "tree"), a.ref], check=True)
            # `python -c` puts its working directory first on sys.path: run in the other tree and its package is imported
            tree = tmp / "tree"
            rows.append((f"import mlops_workbench.all at {a.ref}", timed([py, "-c", "import mlops_workbench.all"], cwd=tree, repeat=a.repeat)))
            ref_top = top_imports("import mlops_workbench.all", cwd=tree)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "tree")], capture_output=True)
            shutil.rmtree(tmp, ignore_errors=True)
    floor = rows[1][1]
    print(f"median of {a.repeat} fresh processes each; ratios against the notebook floor ({floor:.3f} s)\n")
    for name, t in rows: print(f"  {name:<58} {t:7.3f} s   {t / floor:5.2f}x")
    for title, top in [("this tree", top_imports("import mlops_workbench.all"))] + ([(a.ref, ref_top)] if a.ref else []):
        print(f"\nlargest imports under `import mlops_workbench.all` ({title}, -X importtime, cumulative):")
        for t, m in top: print(f"  {t:6.3f} s  {m}")


if __name__ == "__main__":
    main()
