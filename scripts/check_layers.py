#!/usr/bin/env python3
"""Checks that every `#include "eqprop/..."` respects the library's layering.

Layers, lowest first: core -> model -> dynamics -> learn -> train -> the front ends
(tools/eqprop and python/src). A file may include its own layer and the layers below it.
The data sets (io) sit beside that stack: io may include only core (and io), and only
train and the front ends may include io. Headers directly under eqprop/ (the generated
eqprop/build_info.hpp) belong to core.

Scans include/, src/, tools/ and python/src/ under the repository root (the first
argument, default: this script's parent directory). Prints one line per violation,
"path:line: <file's layer> includes <target> (<target's layer>)", and exits 1 if there
is any, 0 otherwise.
"""
import os
import re
import sys

RANK = {"core": 0, "model": 1, "dynamics": 2, "learn": 3, "train": 4, "frontend": 5}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"](eqprop/[^">]+)[">]')
SUFFIXES = (".hpp", ".h", ".cpp", ".cc", ".inl")


def layer_of_file(rel):
    """The layer of a repository file, or None for files outside the scanned trees."""
    parts = rel.split("/")
    if parts[0] == "include" and len(parts) > 2 and parts[1] == "eqprop":
        return parts[2] if len(parts) > 3 else "core"
    if parts[0] == "src" and len(parts) > 2:
        return parts[1]
    if parts[:2] in (["tools", "eqprop"], ["python", "src"]):
        return "frontend"
    return None


def layer_of_include(path):
    parts = path.split("/")
    return parts[1] if len(parts) > 2 else "core"


def violation(src, dst):
    """Why a file of layer src may not include layer dst, or None when it may."""
    for name in (src, dst):
        if name not in RANK and name != "io":
            return f"unknown layer '{name}'"
    if src == "io":
        return None if dst in ("core", "io") else "io may include only core"
    if dst == "io":
        return None if RANK[src] >= RANK["train"] else "only train and above may include io"
    if RANK[dst] > RANK[src]:
        return "a lower layer includes a higher one"
    return None


def check(root):
    problems = []
    for top in ("include", "src", "tools", "python/src"):
        base = os.path.join(root, top)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.endswith(SUFFIXES):
                    continue
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                src = layer_of_file(rel)
                if src is None:
                    continue
                with open(full, encoding="utf-8", errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        dst = layer_of_include(m.group(1))
                        why = violation(src, dst)
                        if why:
                            problems.append(f"{rel}:{lineno}: {src} includes {m.group(1)} ({dst}): {why}")
    return problems


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isdir(os.path.join(root, "include", "eqprop")):
        print(f"check_layers: {root} is not the repository root (no include/eqprop)", file=sys.stderr)
        return 2
    problems = check(root)
    for p in problems:
        print(p)
    if problems:
        print(f"check_layers: {len(problems)} include(s) break the layering", file=sys.stderr)
        return 1
    print("check_layers: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
