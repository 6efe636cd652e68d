#!/usr/bin/env python3
"""Published vs recommended DEEP on XOR one-hot, side by side over a range of seeds.

Runs `eqprop train C --seeds FIRST-LAST --quiet` for configs/graph_xor_onehot.toml and
configs/graph_xor_recommended.toml (in a temporary directory), reads every run's metrics and
prints a Markdown table (final free-phase error per seed, the epoch from which the error
stays at 0 %, solved count). --json / --csv also write the table.

    python3 scripts/deep_xor_compare.py --eqprop build/eqprop --seeds 10 \
        --json docs/results/deep_xor_seeds.json --csv docs/results/deep_xor_seeds.csv
"""
import argparse
import csv
import json
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = {"published": "configs/graph_xor_onehot.toml", "recommended": "configs/graph_xor_recommended.toml"}


def seed_row(run_dir):
    """Final error (%) of a run and the first epoch from which its test accuracy stays 1."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "test_acc" in r]
    solved = None
    for r in rows:
        solved = (solved or r["epoch"]) if r["test_acc"] == 1.0 else None
    return {"error_percent": 100 * (1 - rows[-1]["test_acc"]), "solved_epoch": solved}


def run(eqprop, config, seeds, tmp):
    out = pathlib.Path(tmp) / pathlib.Path(config).stem
    cmd = [eqprop, "train", str(ROOT / config), "--seeds", f"{seeds[0]}-{seeds[-1]}", "--quiet", "--run-dir", str(out)]
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL)
    if done.returncode not in (0, 4):  # 4: some seed diverged (counted as 100 % error)
        sys.exit(f"{' '.join(cmd)} failed with status {done.returncode}")
    rows = {}
    for s in seeds:
        d = out / f"seed-{s}"
        rows[s] = seed_row(d) if (d / "metrics.jsonl").exists() else {"error_percent": 100.0, "solved_epoch": None}
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eqprop", default=str(ROOT / "build" / "eqprop"), help="the eqprop CLI")
    ap.add_argument("--seed", type=int, default=1, help="first seed")
    ap.add_argument("--seeds", type=int, default=10, help="number of seeds")
    ap.add_argument("--json", help="write the table as JSON here")
    ap.add_argument("--csv", help="write the table as CSV here")
    a = ap.parse_args()
    if a.seeds < 1:
        ap.error("--seeds must be >= 1")
    seeds = list(range(a.seed, a.seed + a.seeds))
    with tempfile.TemporaryDirectory(prefix="deep-xor-") as tmp:
        res = {name: run(a.eqprop, cfg, seeds, tmp) for name, cfg in CONFIGS.items()}
    print("\n| seed | published error | published 0% from epoch | recommended error | recommended 0% from epoch |")
    print("|---|---|---|---|---|")
    fmt_epoch = lambda e: "-" if e is None else str(e)
    for s in seeds:
        p, r = res["published"][s], res["recommended"][s]
        print(f"| {s} | {p['error_percent']:.0f}% | {fmt_epoch(p['solved_epoch'])} "
              f"| {r['error_percent']:.0f}% | {fmt_epoch(r['solved_epoch'])} |")
    solved = {k: sum(v[s]["error_percent"] == 0 for s in seeds) for k, v in res.items()}
    print(f"| solved | {solved['published']} of {a.seeds} | | {solved['recommended']} of {a.seeds} | |")
    if a.json:
        doc = {"task": "xor one-hot", "configs": CONFIGS, "seeds": seeds, "solved": solved,
               "per_seed": {k: [{"seed": s, **v[s]} for s in seeds] for k, v in res.items()}}
        pathlib.Path(a.json).write_text(json.dumps(doc, indent=2) + "\n")
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["config", "seed", "error_percent", "solved_epoch"])
            for k, v in res.items():
                for s in seeds:
                    w.writerow([k, s, v[s]["error_percent"], "" if v[s]["solved_epoch"] is None else v[s]["solved_epoch"]])


if __name__ == "__main__":
    main()
