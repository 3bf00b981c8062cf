"""Runs each bench workload in portsim (--stats) and in the SimPy model, and prints both
rates and their ratio. Run from the repository root after `cargo build --release`:

    python3 benches/peers/compare.py [SIMULATED_SECONDS]

SimPy runs at tens of thousands of events a second, so by default both simulate 300 s of
each workload rather than the bench scenarios' full length; rates are per wall second.
"""

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import simpy_models  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "release" / "portsim"


def portsim(scenario, seconds):
    text = (ROOT / "benches" / "scenarios" / scenario).read_text()
    text = re.sub(r'duration = "[^"]*"', f'duration = "{seconds}s"', text, count=1)
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
    out = subprocess.run([str(BIN), "run", f.name, "--stats", "--format", "json"],
                         capture_output=True, text=True, check=True)
    Path(f.name).unlink()
    r = json.loads(out.stdout)
    return r["summary"]["connections"]["attempted"], r["stats"]["attempts_per_s"]


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 300
    for name, model in [("churn-open-loop", simpy_models.churn_open_loop),
                        ("retry-storm", simpy_models.retry_storm)]:
        n_p, rate_p = portsim(f"{name}.toml", seconds)
        t = time.perf_counter()
        c = model(seconds)
        wall = time.perf_counter() - t
        rate_s = c.attempts / wall
        print(f"{name:16} {seconds:g} s simulated | portsim {n_p:>11,} attempts "
              f"{rate_p:>12,.0f}/s | SimPy {c.attempts:>11,} attempts {rate_s:>10,.0f}/s "
              f"| ratio {rate_p / rate_s:,.0f}x")


if __name__ == "__main__":
    main()
