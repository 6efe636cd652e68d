#!/usr/bin/python3
"""Same-window throughput ratios: `eqprop bench` against the reference implementations.

For each workload, runs of `eqprop bench -w W --threads T --seconds S --json F` and of the
reference at the same settings alternate, for several rounds: the EP workloads against
Laborieux et al.'s code (ep_reference.py rate, --code), the GLE workloads against gle-code
(gle_reference.py, --gle-code; they run at the bench's fixed thread counts, 1 and 2). The two
sides of a round run back to back and the order flips every round (ours first in even rounds,
the reference first in odd ones), so that a change of load on a shared machine hits both
sides. The ratio of a round is ours / reference of that round; the table gives the medians
over the rounds, the range of the per-round ratios, and the 1-minute load average around the
runs.

    EQPROP_DATA=/path/to/data python3 bench/reference/side_by_side.py \\
        --code /path/to/Equilibrium-Propagation --rounds 3 --seconds 10 --json results.json

--threads takes several counts (--threads 1 2: every workload at each, a row per workload and
count). A workload may carry its own round count and thread counts, -w vgg4_symmetric:1@2 (one
reference VGG-4 batch takes many minutes on two cores). The JSON file is rewritten after every
run, so an interrupted session keeps what it measured.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EP_WORKLOADS = ["mlp512_symmetric", "mlp512_classic", "mlp512x2_symmetric", "conv32_64_classic", "vgg4_symmetric"]
GLE_WORKLOADS = {"gle_mnist1d_15k": 1, "gle_mnist1d_15k_2t": 2}  # name -> the bench's fixed thread count


def log(msg):
    print(f"[side_by_side] {msg}", file=sys.stderr, flush=True)


def machine():
    info = {"hardware_threads": os.cpu_count(), "kernel": platform.release()}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and "cpu" not in info:
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags") and "isa" not in info:
                flags = set(line.split(":", 1)[1].split())
                info["isa"] = [x for x in ("avx2", "fma", "avx512f", "avx512_bf16") if x in flags]
    with open("/proc/meminfo") as f:
        info["memory"] = f.readline().split(":", 1)[1].strip()
    return info


def run_json(cmd, out):
    """Runs cmd (which writes JSON to out); returns (the parsed JSON, start, end, loads)."""
    load0, t0 = os.getloadavg(), time.time()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t1, load1 = time.time(), os.getloadavg()
    if proc.returncode != 0:
        sys.exit(f"side_by_side: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
                 f"{proc.stderr[-4000:]}")
    with open(out) as f:
        doc = json.load(f)
    return doc, t0, t1, load0, load1


def stamp(t):
    return datetime.datetime.fromtimestamp(t).isoformat(timespec="seconds")


class Session:
    def __init__(self, a):
        self.a = a
        self.tmp = tempfile.mkdtemp(prefix="side_by_side_")
        self.doc = {
            "what": "eqprop bench against the reference implementations, interleaved on one machine",
            "command": " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
            "date": datetime.date.today().isoformat(),
            "started": stamp(time.time()),
            "machine": machine(),
            "settings": {"seconds": a.seconds},
            "loadavg_start": list(os.getloadavg()),
            "eqprop": None,
            "references": {},
            "workloads": [],
        }
        self.rows = {}
        self.peak_done = not a.peak

    def ours(self, name, threads):
        out = os.path.join(self.tmp, "ours.json")
        cmd = [self.a.eqprop, "bench", "-w", name, "--threads", str(threads), "--seconds",
               str(self.a.seconds), "--json", out]
        if self.a.data_dir:
            cmd += ["--data-dir", self.a.data_dir]
        if self.peak_done:
            cmd.append("--no-peak")
        doc, t0, t1, l0, l1 = run_json(cmd, out)
        if not self.peak_done:
            self.doc["peak"] = doc.get("peak")
            self.peak_done = True
        if self.doc["eqprop"] is None:
            self.doc["eqprop"] = {"build": doc.get("build"), "machine": doc.get("machine")}
        w = doc["workloads"][0]
        return w["rate"], w.get("unit", "samples/s"), t0, t1, l0, l1, {
            k: w[k] for k in ("batches", "data", "estimator", "threads") if k in w}

    def reference(self, name, threads):
        out = os.path.join(self.tmp, "ref.json")
        if name in GLE_WORKLOADS:
            cmd = [sys.executable, os.path.join(HERE, "gle_reference.py"), "--code", self.a.gle_code, "-w", name,
                   "--seconds", str(self.a.seconds), "--json", out]
        else:
            cmd = [sys.executable, os.path.join(HERE, "ep_reference.py"), "rate", "--code", self.a.code, "-w", name,
                   "--threads", str(threads), "--seconds", str(self.a.seconds), "--json", out]
        if self.a.data_dir:
            cmd += ["--data-dir", self.a.data_dir]
        doc, t0, t1, l0, l1 = run_json(cmd, out)
        refs = self.doc.setdefault("references", {})
        if doc["implementation"] not in refs:
            refs[doc["implementation"]] = {k: doc[k] for k in ("code_commit", "torch", "blas")}
        w = doc["workloads"][0]
        return w["rate"], w["unit"], t0, t1, l0, l1, {k: w[k] for k in ("batches", "batch", "ms_per_batch_median",
                                                                        "main_args", "us_per_step") if k in w}

    def record(self, name, threads, rnd, side, result):
        rate, unit, t0, t1, l0, l1, extra = result
        row = self.rows.setdefault((name, threads), {"name": name, "threads": threads, "unit": unit, "runs": []})
        row["runs"].append({"round": rnd, "side": side, "rate": rate, "start": stamp(t0),
                            "seconds": round(t1 - t0, 1), "loadavg_before": list(l0), "loadavg_after": list(l1),
                            **extra})
        log(f"round {rnd} {name:<20} {threads} thr. {side:<9} {rate:10.4g} {unit}  (load {l0[0]:.2f} -> "
            f"{l1[0]:.2f})")
        self.summarise()
        self.write()

    def summarise(self):
        out = []
        for row in self.rows.values():
            by_round = {}
            for r in row["runs"]:
                by_round.setdefault(r["round"], {})[r["side"]] = r["rate"]
            pairs = [(v["ours"], v["reference"]) for _, v in sorted(by_round.items()) if len(v) == 2]
            s = dict(row)
            s["ours"] = [r["rate"] for r in row["runs"] if r["side"] == "ours"]
            s["reference"] = [r["rate"] for r in row["runs"] if r["side"] == "reference"]
            s["ratios"] = [o / r for o, r in pairs]
            loads = [x for r in row["runs"] for x in (r["loadavg_before"][0], r["loadavg_after"][0])]
            s["load_1min_range"] = [min(loads), max(loads)]
            if pairs:
                s["ours_median"] = statistics.median(s["ours"])
                s["reference_median"] = statistics.median(s["reference"])
                s["ratio_median"] = statistics.median(s["ratios"])
                s["ratio_range"] = [min(s["ratios"]), max(s["ratios"])]
            out.append(s)
        self.doc["workloads"] = out

    def write(self):
        self.doc["loadavg_end"] = list(os.getloadavg())
        self.doc["finished"] = stamp(time.time())
        if self.a.json:
            tmp = self.a.json + ".tmp"
            with open(tmp, "w") as f:
                f.write(json.dumps(self.doc, indent=2) + "\n")
            os.replace(tmp, self.a.json)


def fmt(x):
    return f"{x:,.0f}".replace(",", " ") if x >= 100 else f"{x:.3g}"


def table(doc):
    lines = ["| workload | threads | ours | reference | ratio (median) | ratio range | rounds | unit | 1-min load |",
             "|---|---|---|---|---|---|---|---|---|"]
    for w in doc["workloads"]:
        if "ratio_median" not in w:
            continue
        lines.append(f"| {w['name']} | {w['threads']} | {fmt(w['ours_median'])} | {fmt(w['reference_median'])} | "
                     f"**{w['ratio_median']:.1f}×** | {w['ratio_range'][0]:.1f}–{w['ratio_range'][1]:.1f} | "
                     f"{len(w['ratios'])} | {w['unit']} | {w['load_1min_range'][0]:.1f}–{w['load_1min_range'][1]:.1f} |")
    return "\n".join(lines)


def parse_workloads(a):
    """[(name, threads, rounds)] from W[:ROUNDS][@T1,T2,...] items (GLE: the bench's thread count)."""
    out = []
    known = EP_WORKLOADS + list(GLE_WORKLOADS)
    for item in a.workload or (EP_WORKLOADS + (list(GLE_WORKLOADS) if a.gle_code else [])):
        spec, _, ts = item.partition("@")
        name, _, n = spec.partition(":")
        if name not in known:
            sys.exit(f"side_by_side: unknown workload {name} (one of {', '.join(known)})")
        if name in GLE_WORKLOADS and not a.gle_code:
            sys.exit(f"side_by_side: {name} needs --gle-code")
        threads = [GLE_WORKLOADS[name]] if name in GLE_WORKLOADS else \
            [int(x) for x in ts.split(",")] if ts else a.threads
        for t in threads:
            out.append((name, t, int(n) if n else a.rounds))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--code", required=True, help="checkout of Laborieux-Axel/Equilibrium-Propagation")
    ap.add_argument("--gle-code", help="checkout of unibe-cns/gle-code (adds the GLE workloads)")
    ap.add_argument("--eqprop", default=os.path.join(REPO, "build", "eqprop"), help="the CLI (default: %(default)s)")
    ap.add_argument("-w", "--workload", action="append",
                    help="W[:ROUNDS][@THREADS,...], repeatable (default: " + ", ".join(EP_WORKLOADS) +
                    ", and with --gle-code " + ", ".join(GLE_WORKLOADS) + ")")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per workload (default: 3)")
    ap.add_argument("--seconds", type=float, default=10, help="timed seconds per run (default: 10)")
    ap.add_argument("--threads", type=int, nargs="+", default=[2],
                    help="both sides' threads; several counts: each workload at each (default: 2)")
    ap.add_argument("--data-dir", default=None, help="MNIST (default: $EQPROP_DATA, as both tools read it)")
    ap.add_argument("--no-peak", dest="peak", action="store_false",
                    help="skip eqprop's matrix-multiply peak (measured once, in the first run)")
    ap.add_argument("--json", help="write the results here (rewritten after every run)")
    a = ap.parse_args()
    work = parse_workloads(a)
    s = Session(a)
    s.doc["settings"]["runs"] = [{"workload": name, "threads": t, "rounds": n} for name, t, n in work]
    for rnd in range(max(n for _, _, n in work)):
        for name, t, n in work:
            if rnd >= n:
                continue
            sides = ["ours", "reference"] if rnd % 2 == 0 else ["reference", "ours"]
            for side in sides:
                s.record(name, t, rnd, side, s.ours(name, t) if side == "ours" else s.reference(name, t))
    s.write()
    d = s.doc
    print(f"{d['date']}, {d['machine'].get('cpu')}, {d['machine']['hardware_threads']} hardware threads, "
          f"--seconds {a.seconds:g}; load average at start "
          f"{' '.join(f'{x:.2f}' for x in d['loadavg_start'])}, at end {' '.join(f'{x:.2f}' for x in d['loadavg_end'])}")
    print(table(d))


if __name__ == "__main__":
    main()
