"""Start-up time of the ``hsbench`` CLI (a script, not a test): target under 0.5 s for ``--help``.

Each case runs in a fresh interpreter (``python -c ...``), ``--repeats`` times
after one untimed warm-up run (page cache), and reports wall-clock seconds:
median, min and max. Cases:

* ``python`` - an empty interpreter (the floor on this machine);
* ``import hsbench.cli`` - building the Typer app with every command registered;
* ``hsbench --help`` - what a user types first;
* ``hsbench report --help`` - one command's help.

Both wall-clock and CPU seconds (user + system) are printed; on a shared,
busy machine the CPU seconds are the number to compare.

It also lists which heavy libraries (torch, timm, pandas, seaborn, SQLAlchemy,
numpy) ``import hsbench.cli`` loaded: none is the goal (hsbench/cli.py).

Example::

    python benchmarks/bench_cli_startup.py --repeats 10

Prints one human-readable block and one JSON line (``--json`` for JSON only).
Wall-clock timings depend on the machine's load: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "pandas", "seaborn", "matplotlib", "sqlalchemy", "numpy")
CASES = {
    "python": "pass",
    "import hsbench.cli": "import hsbench.cli",
    "hsbench --help": "import sys; from hsbench.cli import main; sys.exit(main(['--help']))",
    "hsbench report --help": "import sys; from hsbench.cli import main; sys.exit(main(['report', '--help']))",
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def time_case(code: str, repeats: int) -> tuple[list[float], list[float]]:
    """(wall-clock, CPU) seconds of ``python -c code``, ``repeats`` times after one warm-up run.

    CPU seconds (user + system of the child, from ``getrusage``) are far less
    sensitive than wall-clock time to other processes on a busy machine.
    """
    env = _env()
    cmd = [sys.executable, "-c", code]
    subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, check=True)
    wall, cpu = [], []
    for _ in range(repeats):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, check=True)
        wall.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
    return wall, cpu


def heavy_modules_loaded() -> list[str]:
    """Heavy libraries present in ``sys.modules`` after ``import hsbench.cli``."""
    code = f"import sys, json, hsbench.cli; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], env=_env(), cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10, help="timed runs per case (default 10)")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args()

    results = {}
    for name, code in CASES.items():
        t, c = time_case(code, args.repeats)
        results[name] = {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
                         "cpu_median_s": statistics.median(c), "n": len(t)}
    heavy = heavy_modules_loaded()
    record = {
        "benchmark": "cli_startup",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "heavy_modules_after_import": heavy,
        "cases": results,
    }
    if not args.json:
        print(f"hsbench CLI start-up, wall-clock seconds over {args.repeats} fresh interpreters "
              f"(Python {record['python']}, {record['cpus']} CPUs, 1-min load {record['load_avg_1min']:.1f})")
        for name, r in results.items():
            print(f"  {name:<24} median {r['median_s']:.3f}  min {r['min_s']:.3f}  max {r['max_s']:.3f}"
                  f"   CPU median {r['cpu_median_s']:.3f}")
        print(f"  heavy modules loaded by `import hsbench.cli`: {heavy or 'none'}")
        target = results["hsbench --help"]["median_s"]
        print(f"  target `hsbench --help` < 0.5 s wall on an idle machine: "
              f"{'met' if target < 0.5 else 'not met here'} ({target:.3f} s; CPU "
              f"{results['hsbench --help']['cpu_median_s']:.3f} s)")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
