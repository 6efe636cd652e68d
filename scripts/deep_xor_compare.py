#!/usr/bin/env python3
"""Published vs recommended DEEP on XOR one-hot, side by side over a range of seeds.

Runs `eqprop deep train --config C --seed FIRST --seeds N --quiet` for
configs/deep_xor_onehot.toml and configs/deep_xor_onehot_recommended.toml, prints every seed
line as it comes, then a Markdown table (final free-phase error per seed, the epoch from which
the error stays at 0 %, solved count). --json / --csv also write the table.

    python3 scripts/deep_xor_compare.py --eqprop build/eqprop --seeds 10 \
        --json docs/deep_xor_seeds.json --csv docs/deep_xor_seeds.csv
"""
import argparse
import csv
import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = {"published": "configs/deep_xor_onehot.toml", "recommended": "configs/deep_xor_onehot_recommended.toml"}
SEED_LINE = re.compile(r"^seed (\d+): (?:free-phase train error ([\d.]+)%(?: \(0% from epoch (\d+)\))?|diverged)")


def run(eqprop, config, first, n):
    cmd = [eqprop, "deep", "train", "--config", str(ROOT / config), "--seed", str(first), "--seeds", str(n), "--quiet"]
    print("$", " ".join(cmd), flush=True)
    rows = {}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as p:
        for line in p.stdout:
            print("  " + line.rstrip(), flush=True)
            m = SEED_LINE.match(line)
            if m:
                seed = int(m.group(1))
                err = float(m.group(2)) if m.group(2) is not None else 100.0  # diverged: counted as 100 %
                rows[seed] = {"error_percent": err, "solved_epoch": int(m.group(3)) if m.group(3) else None}
    if p.returncode not in (0, 4):  # 4: some seed diverged (already counted)
        sys.exit(f"{' '.join(cmd)} failed with status {p.returncode}")
    if len(rows) != n:
        sys.exit(f"expected {n} seed lines from {config}, got {len(rows)}")
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
    res = {name: run(a.eqprop, cfg, a.seed, a.seeds) for name, cfg in CONFIGS.items()}
    seeds = list(range(a.seed, a.seed + a.seeds))
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
