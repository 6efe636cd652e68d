#!/usr/bin/python3
"""Runs every `eqprop` command line of README.md and docs/**/*.md, cheaply, and fails when one
of them is wrong: an unknown command or flag, an unknown config key, a file that does not
exist, a documented error message that is not what the tool prints.

Usage: check_doc_commands.py [--cli PATH] [--data DIR] [--list] [-v] [FILE.md ...]
(default files: README.md and every .md under docs/, subdirectories included: guide/, dev/,
results/, reference/; the CLI: --cli, else $EQPROP_CLI, else build/eqprop).

What counts as a command line
  A line of a fenced code block (``` with no language, sh, bash, shell or console), of an
  indented code block, or an inline code span, that starts with `eqprop `, `./build/eqprop `
  or `build/eqprop `, possibly after `$ ` and environment assignments (`EQPROP_DATA=DIR `).
  Lines ending in `\\` are joined with the next; `# comments` are dropped; `NAME=value` lines
  of a block define `$NAME` for its later lines. A brace alternative `{a,b}` stands for one
  command per alternative (the docs use it to name several runs in one line).
  A `$ ` line followed by output lines that include `eqprop: error: ...` documents a usage
  error: the command must exit with status 2 and print exactly that line on stderr.

Skipped (counted and listed with the reason): templates, i.e. lines with a placeholder in
  capitals (`RUN`, `KEY=VALUE`, `--epochs N`), `...`, optional `[--flag ...]` brackets, `a|b`
  alternatives or `<...>`; commands needing a data set that is not on this machine and that
  cannot be validated without it; commands naming a run that an earlier command in the same
  file did not make (because that one was only validated).

How each command is made cheap (the rule: a command keeps every word it has, so every flag,
  file and config key of the docs is checked; only cost is cut):
  * Each file's commands run in document order in a fresh sandbox directory laid out like the
    repository: `configs/` (linked), the repository's other directories (empty, for outputs
    such as `bench/results/x.json`), `build/eqprop` (the CLI) and `../shared/data` (the data
    directory, when there is one). Relative paths in a command (`runs/x`, `--out sweep-fig2d`)
    thus land in the sandbox, and a later command finds what an earlier one wrote. The
    repository is never written to.
  * `train`, `gle train`, `gep train` and `deep train`: first run with `--print-config` appended,
    which checks the flags, the config files and every key. When the config's data set is
    present (or generated, Yin-Yang), the command then runs for real with `--epochs 1` (a
    resumed run: `--epochs` one more than it has) and `--set data.limit_train=...`, `--set
    data.limit_test=...` (Yin-Yang: `data.yin_yang_*`) appended; without the data it counts
    as validated. A `train` (not `gle train`) without `--run-dir` or `--resume` gets
    `--run-dir runs/<config stem>-<unique time>`, the default name, so that two runs started
    in one second do not collide; a later `runs/<stem>-<date>-<time>` of the docs that does
    not exist names the newest such run of the sandbox.
  * Flags that only scale the cost are lowered to a cap (CAPS below: step counts, seeds,
    seconds, grid sizes, training time); none is added or removed except `bench --no-peak`.
  * A command that names only a command (`eqprop deep train` in a sentence) runs with
    `--help`: it checks that the command exists; there is nothing else to check.
  * `data fetch` and `data generate` run only when the data set is present (they then
    verify and download or write nothing), and never with `--force`.
Each command has a time limit (LIMIT_S); the whole check takes a few minutes (4.5 on a
2-core machine busy with a build).

Data: $EQPROP_DATA, else ../shared/data beside the repository (as the tests find it).
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIMIT_S = 60
PREFIXES = ("eqprop", "./build/eqprop", "build/eqprop")
CODE_LANGS = {"", "sh", "bash", "shell", "console"}
TOP_COMMANDS = {"info", "gradcheck", "train", "eval", "data", "plot", "sweep", "deep", "gle", "bench", "gep"}
GROUPS = {"data", "sweep", "deep", "gle", "gep"}  # commands whose first word is a subcommand
TRAIN_SAMPLES, TEST_SAMPLES, DIAGNOSTIC_SAMPLES = 16, 16, 4
# Flags that only scale a command's cost -> the largest value run (CAPPED_IN: only in these commands).
CAPS = {
    "--free-steps": 60, "--T1": 60, "--nudged-steps": 60, "--T2": 60, "--reference-steps": 60,
    "--seconds": 0.05, "--seeds": 2, "--grid": 11, "--t-train": 20, "--samples": 64,
    "--train-size": TRAIN_SAMPLES, "--test-size": TEST_SAMPLES, "--epochs": 1, "--batch": 2, "--periods": 4,
}
# Cost flags whose default is expensive: added at their cap when the line does not give them.
ADD_AT_CAP = {"bench": ["--seconds"], "gle lagline": ["--t-train"], "sweep periods": ["--periods"],
              "deep train": ["--epochs"]}
CAPPED_IN = {  # the commands whose flag of that name is a cost (train's --seeds/--grid are not)
    "--seeds": {"deep train"}, "--grid": {"sweep stability"}, "--epochs": {"deep train"},
    "--batch": {"gradcheck", "sweep beta", "sweep periods"},
}
# With --stop-early step counts are a budget, not a cost; implicit differentiation needs the fixed point.
STEP_FLAGS = {"--free-steps", "--T1", "--nudged-steps", "--T2"}
WIDE_CONV = 64  # gradcheck / sweep of a ConvNet with a wider layer (VGG): flags checked against --help only
# Bench workloads of more than a few seconds even for their minimum of batches: checked against
# `bench --list` but not run.
HEAVY_BENCH = {"conv32_64_classic", "vgg4_symmetric"}
# Where a data set's files live under the data directory (as the loaders read them).
DATA_SUBDIRS = {
    "mnist": "mnist", "fashion_mnist": "fashion-mnist", "fashion-mnist": "fashion-mnist", "kmnist": "kmnist",
    "mnist1d": "mnist-1d/standard", "mnist1d_gle": "mnist-1d/gle-360", "cifar10": "cifar-10-batches-bin",
    "cifar100": "cifar-100-binary", "imagenet32": "imagenet32",
}
GENERATED_DATA = {"yin_yang", "xor", "and", "or", "not", "identity", ""}
PLACEHOLDER = re.compile(r"(^|[=,:/\s])([A-Z][A-Z0-9_]*)(?=$|[=,/\s])")
DATED_RUN = re.compile(r"^(.*/)?([A-Za-z0-9_.]+?)-(\d{8}-\d{6})$")


@dataclasses.dataclass
class Item:
    file: str
    line: int
    text: str              # the command line as the docs write it (joined, without comments)
    inline: bool = False
    expect_error: str | None = None  # documented "eqprop: error: ..." line
    expect_status: int = 0           # documented exit status ("`eqprop ...` exits with status 2")


# --------------------------------------------------------------------------- extraction

def command_start(words: list[str]) -> int | None:
    """Index of the eqprop word after optional environment assignments, or None."""
    i = 0
    while i < len(words) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[i]):
        i += 1
    return i if i + 1 < len(words) and words[i] in PREFIXES else None


def split_words(text: str) -> list[str] | None:
    try:
        return shlex.split(text, comments=True)
    except ValueError:
        return None


def strip_comment(text: str) -> str:
    """The line without a trailing shell comment (a # after a blank, outside quotes)."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text.rstrip()


def expand_vars(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), m.group(0)), text)


def block_items(path: str, lines: list[tuple[int, str]]) -> list[Item]:
    """Commands of one code block: [(line number, text)]."""
    logical: list[tuple[int, str]] = []
    pending, start = "", 0
    for no, raw in lines:
        if not pending:
            start = no
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        logical.append((start, pending + raw))
        pending = ""
    if pending:
        logical.append((start, pending))
    items: list[Item] = []
    variables: dict[str, str] = {}
    current: Item | None = None
    for no, text in logical:
        stripped = text.strip()
        prompt = stripped.startswith("$ ")
        body = strip_comment(stripped[2:] if prompt else stripped)
        body = expand_vars(body, variables)
        words = split_words(body) or []
        at = command_start(words)
        if at is None and words and all(re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w) for w in words):
            for part in re.split(r";\s*", body):  # NAME=value lines define $NAME
                assign = split_words(part)
                for w in assign or []:
                    name, _, value = w.partition("=")
                    variables[name] = value
            current = None
            continue
        if at is None:
            if current is not None and not prompt and stripped.startswith("eqprop: error"):
                current.expect_error = stripped
            continue
        current = Item(path, no, body)
        items.append(current)
        if not prompt:
            current = None
    return items


def extract(path: Path, rel: str) -> list[Item]:
    lines = path.read_text(encoding="utf-8").split("\n")
    items: list[Item] = []
    prose: list[str] = []  # the file with code blocks blanked out, for inline spans
    fence: str | None = None
    lang = ""
    block: list[tuple[int, str]] = []
    prev_blank = True
    in_indented = False
    for i, line in enumerate(lines, 1):
        m = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", line)
        if fence is None and m:
            fence, lang, block = m.group(1), m.group(2).lower(), []
            prose.append("")
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                if lang in CODE_LANGS:
                    items += block_items(rel, block)
                fence = None
            else:
                block.append((i, line))
            prose.append("")
            continue
        indented = line.startswith("    ") and line.strip() != ""
        if indented and (prev_blank or in_indented):
            if not in_indented:
                block, in_indented = [], True
            block.append((i, line))
            prose.append("")
            continue
        if in_indented:  # a blank or unindented line ends an indented block
            items += block_items(rel, block)
            block, in_indented = [], False
        prose.append(line)
        prev_blank = not line.strip()
    if in_indented:
        items += block_items(rel, block)
    text = "\n".join(prose)
    for m in re.finditer(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", text, re.S):
        span = " ".join(m.group(2).split())
        words = split_words(span)
        if words is None or command_start(words) is None:
            continue
        after = re.match(r"[^.`]*?\bexits? with status (\d+)", text[m.end():m.end() + 80].replace("\n", " "))
        items.append(Item(rel, text.count("\n", 0, m.start()) + 1, span, inline=True,
                          expect_status=int(after.group(1)) if after else 0))
    items.sort(key=lambda it: it.line)
    return items


def expand_braces(text: str) -> list[str]:
    m = re.search(r"\{([^{}]*,[^{}]*)\}", text)
    if not m:
        return [text]
    out = []
    for alt in m.group(1).split(","):
        out += expand_braces(text[:m.start()] + alt + text[m.end():])
    return out


def template_reason(words: list[str]) -> str | None:
    for w in words:
        if "..." in w or "…" in w:
            return "'...' elision"
        if w.startswith("["):
            return f"optional-syntax brackets '{w}'"
        if "|" in w:
            return f"alternatives '{w}'"
        if "<" in w or ">" in w:
            return f"placeholder '{w}'"
        if "$" in w:
            return f"unset shell variable in '{w}'"
        m = PLACEHOLDER.search(w)
        if m and not w.startswith("-"):
            return f"placeholder '{m.group(2)}'"
    return None


# --------------------------------------------------------------------------- running

@dataclasses.dataclass
class Result:
    item: Item
    command: str
    status: str  # ran | validated | skipped | failed
    detail: str = ""
    output: str = ""
    seconds: float = 0.0
    ran: str = ""  # the command line run, when it failed


def command_name(args: list[str]) -> str:
    words = [a for a in args[:2] if not a.startswith("-")]
    if not words or words[0] not in TOP_COMMANDS:
        return words[0] if words else ""
    if words[0] in GROUPS and len(words) > 1:
        return " ".join(words[:2])
    return words[0]


def flag_value(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
    return None


def set_flag(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    for i, a in enumerate(out):
        if a == flag and i + 1 < len(out):
            out[i + 1] = value
            return out
        if a.startswith(flag + "="):
            out[i] = f"{flag}={value}"
            return out
    return out + [flag, value]


def capped(args: list[str], name: str) -> list[str]:
    out = list(args)
    for i, a in enumerate(out[:-1]):
        flag = a.split("=", 1)[0]
        if flag not in CAPS or "=" in a or (flag in CAPPED_IN and name not in CAPPED_IN[flag]) \
                or (flag in STEP_FLAGS | {"--reference-steps"} and ("--stop-early" in args or "implicit" in args)):
            continue
        try:
            value = float(out[i + 1])
        except ValueError:
            continue
        cap = CAPS[flag]
        if value > cap:
            out[i + 1] = str(cap)
    for flag in ADD_AT_CAP.get(name, []):
        if flag_value(out, flag) is None:
            out += [flag, str(CAPS[flag])]
    return out


def repo_dirs() -> list[str]:
    """The repository's directories (not configs/, build trees, runs, data, hidden ones), relative."""
    out = []
    for top, dirs, _ in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "build", "runs", "data", "__pycache__"))
                         and not (top == str(REPO) and d == "configs"))
        out += [os.path.relpath(os.path.join(top, d), REPO) for d in dirs]
    return out


class Sandbox:
    def __init__(self, root: Path, cli: Path, data: Path | None):
        self.repo = root / "repo"
        self.data = data
        self.repo.mkdir(parents=True)
        for rel in repo_dirs():
            (self.repo / rel).mkdir(parents=True, exist_ok=True)
        (self.repo / "configs").symlink_to(REPO / "configs")
        (self.repo / "build").mkdir(exist_ok=True)
        (self.repo / "build" / "eqprop").symlink_to(cli)
        if data is not None:
            (root / "shared").mkdir()
            (root / "shared" / "data").symlink_to(data)
        self.stamp = int(time.time())
        self.made: list[str] = []  # run directories made by this sandbox's commands, in order
        self.validated_only: list[str] = []  # run directories of trainers that were only validated

    def unique_run_dir(self, stem: str) -> str:
        self.stamp += 1
        return "runs/" + stem + "-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(self.stamp))

    def expand(self, word: str) -> str:
        """A word as the command gets it: a glob that matches (`runs/x-*`) is the newest match; a
        documented `runs/<stem>-<date>-<time>` that does not exist is the newest such run made here."""
        if any(c in word for c in "*?") and not word.startswith("-"):
            matches = sorted(glob.glob(word, root_dir=self.repo), key=lambda p: (self.repo / p).stat().st_mtime)
            return matches[-1] if matches else word
        m = DATED_RUN.match(word)
        if not m or (self.repo / word).exists():
            return word
        prefix = (m.group(1) or "") + m.group(2) + "-"
        for made in reversed(self.made):
            if made.startswith(prefix) and DATED_RUN.match(made):
                return made
        return word

    def missing_run(self, args: list[str]) -> str | None:
        """A `runs/...` word naming a run that is not here because its trainer was only validated."""
        for w in args:
            if w.startswith("runs/") and not (self.repo / w).exists() and self.validated_only:
                if any(w == v or w.startswith(v + "/") for v in self.validated_only) or DATED_RUN.match(w) \
                        or any(c in w for c in "*?"):
                    return w
        return None


def has_data(data: Path | None, name: str) -> bool:
    if name in GENERATED_DATA:
        return True
    sub = DATA_SUBDIRS.get(name)
    return data is not None and sub is not None and (data / sub).is_dir() and any((data / sub).iterdir())


class Runner:
    def __init__(self, cli: Path, data: Path | None, verbose: bool):
        self.cli, self.data, self.verbose = cli, data, verbose
        self.helps: dict[str, dict[str, bool] | None] = {}

    def exec(self, box: Sandbox, env_words: list[str], args: list[str]) -> tuple[int, str, str, float]:
        env = dict(os.environ)
        env.pop("EQPROP_DATA", None)
        if self.data is not None:
            env["EQPROP_DATA"] = str(self.data)
        env["EQPROP_PROGRESS_INTERVAL"] = "3600"
        for w in env_words:
            k, _, v = w.partition("=")
            env[k] = v
        self.last = "eqprop " + shlex.join(args)
        t0 = time.monotonic()
        try:
            p = subprocess.run([str(self.cli)] + args, cwd=box.repo, env=env, capture_output=True, text=True,
                               timeout=LIMIT_S, stdin=subprocess.DEVNULL)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = 124, (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""), \
                f"(killed after the {LIMIT_S} s limit: make this command cheaper in {Path(__file__).name})"
        if self.verbose:
            print(f"    [{time.monotonic() - t0:5.1f} s] rc={rc} eqprop {shlex.join(args)}", file=sys.stderr)
        return rc, out, err, time.monotonic() - t0

    def help_flags(self, box: Sandbox, name: str) -> dict[str, bool] | None:
        """The flags of a command from its --help: {flag: takes a value}; None if it has no help."""
        if name not in self.helps:
            rc, out, _, _ = self.exec(box, [], name.split() + ["--help"])
            flags: dict[str, bool] = {}
            for line in out.splitlines() if rc == 0 else []:
                m = re.match(r"^\s+(-[\w-]+(?:,\s*-[\w-]+)*)(\s+[A-Z]+)?", line)
                if m:
                    for f in re.split(r",\s*", m.group(1)):
                        flags[f] = bool(m.group(2))
            self.helps[name] = flags if rc == 0 else None
        return self.helps[name]

    def check_flags(self, box: Sandbox, item: Item, text: str, name: str, rest: list[str], why: str) -> Result:
        """Validation without running: every flag word is one that `NAME --help` lists."""
        flags = self.help_flags(box, name) or {}
        unknown = [w for w in rest if w.startswith("-") and w.split("=")[0] not in flags]
        if unknown:
            return Result(item, text, "failed", f"`eqprop {name} --help` lists no {', '.join(unknown)}")
        return Result(item, text, "validated", f"--help lists its flags ({why})")

    def run(self, box: Sandbox, item: Item, text: str) -> Result:
        words = split_words(text)
        if words is None:
            return Result(item, text, "failed", "cannot be split into words (unbalanced quotes)")
        at = command_start(words)
        env_words, args = words[:at], words[at + 1:]
        reason = template_reason(args + [w.partition("=")[2] for w in env_words])
        if reason:
            return Result(item, text, "skipped", f"template: {reason}")
        args = [box.expand(a) for a in args]
        name = command_name(args)

        def outcome(rc, out, err, secs, status="ran", detail=""):
            if rc != item.expect_status:
                expected = f" (documented: {item.expect_status})" if item.expect_status else ""
                return Result(item, text, "failed", f"exit status {rc}{expected}", (out + err)[-1500:], secs, self.last)
            return Result(item, text, status, detail, "", secs)

        if item.expect_error is not None:
            rc, out, err, secs = self.exec(box, env_words, args)
            if rc != 2 or item.expect_error not in err.splitlines():
                return Result(item, text, "failed", f"documented as a usage error printing `{item.expect_error}`; got "
                              f"exit status {rc}", (out + err)[-1500:], secs)
            return Result(item, text, "ran", "usage error as documented", "", secs)
        if item.expect_status or not name or name.split()[0] not in TOP_COMMANDS:
            return outcome(*self.exec(box, env_words, args))
        if any(a in ("--help", "-h", "--print-config", "--list") for a in args):
            return outcome(*self.exec(box, env_words, args))
        rest = args[len(name.split()):]
        flags = self.help_flags(box, name) if item.inline else None
        if flags is not None and (not rest or (rest[-1] in flags and flags[rest[-1]])):
            # A sentence naming a command, or a flag of it (`eqprop bench --threads`): its --help lists them.
            return self.check_flags(box, item, text, name, rest, "names a command or flag")
        missing = box.missing_run(args)
        if missing:
            return Result(item, text, "skipped", f"{missing} was not made: the command making it was only validated")
        if name in ("train", "gep train", "gle train", "deep train"):
            return self.run_trainer(box, item, text, env_words, args, name, outcome)
        data_name = flag_value(args, "--dataset") or flag_value(args, "--task") or ""
        if name in ("data fetch", "data verify", "data generate"):
            target = next((a for a in args[2:] if not a.startswith("-")), "")
            if "--force" in args and name != "data verify":
                return Result(item, text, "skipped", f"{name} --force would download or write")
            if not has_data(self.data, target):
                return Result(item, text, "skipped", f"data set '{target}' not on this machine")
            where = flag_value(args, "--data-dir")
            if where and not (box.repo / where).exists():
                (box.repo / where).symlink_to(self.data)
        elif data_name and not has_data(self.data, data_name):
            return Result(item, text, "skipped", f"data set '{data_name}' not on this machine")
        conv = flag_value(args, "--conv")
        if conv and max(int(c) for c in conv.split(",") if c.isdigit()) > WIDE_CONV:
            return self.check_flags(box, item, text, name, args[len(name.split()):], "a ConvNet too wide to run")
        run_args = capped(args, name)
        if name == "bench":
            return self.run_bench(box, item, text, env_words, run_args, outcome)
        return outcome(*self.exec(box, env_words, run_args))

    def run_bench(self, box, item, text, env_words, args, outcome) -> Result:
        if not any(a in ("-w", "--workload") for a in args):  # every workload: what there is to check is --list
            return outcome(*self.exec(box, env_words, args + ["--list"]), status="validated", detail="--list")
        rc, out, err, secs = self.exec(box, [], ["bench", "--list"])
        known = {line.split()[0] for line in out.splitlines() if line.strip()}
        if "--to-accuracy" in args:  # trains to a target accuracy (hours): the tasks must be in --list
            tasks = [a for i, a in enumerate(args) if i > 0 and args[i - 1] in ("-w", "--workload")]
            missing = [t for t in tasks if t not in known]
            if missing:
                return Result(item, text, "failed", f"no task {', '.join(missing)} in `eqprop bench --list`")
            return Result(item, text, "validated", "--to-accuracy tasks are in --list (not run)")
        run_args, left_out = [], []
        for i, a in enumerate(args):
            if i > 0 and args[i - 1] in ("-w", "--workload") and a in HEAVY_BENCH:
                left_out.append(a)
                run_args.pop()
            elif a in known or not (i > 0 and args[i - 1] in ("-w", "--workload")):
                run_args.append(a)
            else:
                return Result(item, text, "failed", f"no workload '{a}' in `eqprop bench --list`")
        if not any(a in ("-w", "--workload") for a in run_args):
            return Result(item, text, "validated", f"workloads {', '.join(left_out)} are in --list (not run)")
        run_args += ["--no-peak"]
        return outcome(*self.exec(box, env_words, run_args))

    def run_trainer(self, box, item, text, env_words, args, name, outcome) -> Result:
        single = [a for i, a in enumerate(args)  # a sweep's config: the line without --seeds/--grid
                  if a not in ("--seeds", "--grid") and (i == 0 or args[i - 1] not in ("--seeds", "--grid"))]
        rc, out, err, secs = self.exec(box, env_words, single + ["--print-config"])
        if rc != 0:
            return outcome(rc, out, err, secs)
        try:
            cfg = tomllib.loads(out)
        except tomllib.TOMLDecodeError as e:
            return Result(item, text, "failed", f"--print-config printed no TOML: {e}", out[-1500:], secs)
        data_cfg = cfg.get("data", {})
        data_name = data_cfg.get("name", "")
        resume = flag_value(args, "--resume")
        if not has_data(self.data, data_name):
            if not resume:
                box.validated_only.append(flag_value(args, "--run-dir") or cfg.get("run", {}).get("dir", "") or "runs/")
            return Result(item, text, "validated", f"--print-config (data set '{data_name}' not here)", "", secs)
        run_args = capped(args, name)  # deep train's flags that scale the cost (--seeds K, --T1, ...)
        if resume:
            done = epochs_done(box.repo / resume)
            run_args = set_flag(run_args, "--epochs", str(done + 1))
        else:
            run_args = set_flag(run_args, "--epochs", "1")
            if data_name == "yin_yang" and "yin_yang_train" in data_cfg:
                run_args += ["--set", f"data.yin_yang_train={TRAIN_SAMPLES}", "--set", f"data.yin_yang_test={TEST_SAMPLES}"]
            elif "limit_train" in data_cfg:
                run_args += ["--set", f"data.limit_train={TRAIN_SAMPLES}", "--set", f"data.limit_test={TEST_SAMPLES}"]
            if "samples" in cfg.get("diagnostics", {}):
                run_args += ["--set", f"diagnostics.samples={DIAGNOSTIC_SAMPLES}"]
            if name != "gle train" and flag_value(args, "--run-dir") is None:
                stem = Path(next((a for a in args[1:] if a.endswith(".toml")), "default")).stem
                sweep = flag_value(args, "--seeds") is not None or flag_value(args, "--grid") is not None
                run_args += ["--run-dir", box.unique_run_dir(stem + ("-sweep" if sweep else ""))]
            made = flag_value(run_args, "--run-dir") or cfg.get("run", {}).get("dir", "")
            if made:
                box.made.append(made)
        return outcome(*self.exec(box, env_words, run_args), detail=shlex.join(run_args[len(args):]))


def epochs_done(run: Path) -> int:
    """Epochs in a run's metrics log (0 when there is none)."""
    best = 0
    for line in (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []:
        m = re.search(r'"epoch":\s*(\d+)', line)
        if m:
            best = max(best, int(m.group(1)))
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help="Markdown files (default: README.md and docs/**/*.md)")
    ap.add_argument("--cli", help="the eqprop binary (default: $EQPROP_CLI, else build/eqprop)")
    ap.add_argument("--data", help="data directory (default: $EQPROP_DATA, else ../shared/data)")
    ap.add_argument("--list", action="store_true", help="list the command lines found and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every command run, with its time")
    a = ap.parse_args()
    files = [Path(f).resolve() for f in a.files] or [REPO / "README.md"] + sorted((REPO / "docs").rglob("*.md"))
    items = {f: extract(f, str(f.relative_to(REPO)) if f.is_relative_to(REPO) else str(f)) for f in files}
    if a.list:
        for f, its in items.items():
            for it in its:
                print(f"{it.file}:{it.line}: {'inline ' if it.inline else ''}{it.text}"
                      + (f"   => {it.expect_error}" if it.expect_error else ""))
        return 0
    cli = Path(a.cli or os.environ.get("EQPROP_CLI") or REPO / "build" / "eqprop").resolve()
    if not os.access(cli, os.X_OK):
        print(f"check_doc_commands: no eqprop binary at {cli} (build it, or pass --cli / set EQPROP_CLI)", file=sys.stderr)
        return 2
    data = Path(a.data or os.environ.get("EQPROP_DATA") or REPO.parent / "shared" / "data").resolve()
    data = data if data.is_dir() else None
    runner = Runner(cli, data, a.verbose)
    results: list[Result] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="eqprop-doc-commands-") as tmp:
        for n, (f, its) in enumerate(items.items()):
            if not its:
                continue
            box = Sandbox(Path(tmp) / str(n), cli, data)
            for it in its:
                for text in expand_braces(it.text):
                    r = runner.run(box, it, text)
                    results.append(r)
                    if a.verbose:
                        print(f"{r.status:9} {r.seconds:5.1f} s {it.file}:{it.line}: {text}  {r.detail}", file=sys.stderr)
    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        print(f"{r.item.file}:{r.item.line}: FAILED ({r.detail}): {r.command}")
        if r.ran:
            print(f"    ran: {r.ran}")
        for line in r.output.strip().splitlines()[-8:]:
            print(f"    {line}")
    skipped = [r for r in results if r.status == "skipped"]
    if skipped:
        print(f"skipped {len(skipped)}:")
        for r in skipped:
            print(f"  {r.item.file}:{r.item.line}: {r.detail}: {r.command}")
    count = lambda s: sum(r.status == s for r in results)
    kinds = collections.Counter("template" if r.detail.startswith("template") else "data set absent"
                                if "not on this machine" in r.detail else "needs a run that was only validated"
                                if "was not made" in r.detail else r.detail for r in skipped)
    why = "; ".join(f"{n} {k}" for k, n in kinds.most_common())
    print(f"check_doc_commands: {len(results)} command lines in {len(files)} files: {count('ran')} run, "
          f"{count('validated')} validated (--print-config / --help / --list), {len(skipped)} skipped"
          f"{f' ({why})' if why else ''}, {len(failed)} failed ({time.monotonic() - t0:.0f} s; data: {data or 'none'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
