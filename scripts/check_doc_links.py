#!/usr/bin/python3
"""Checks the links of the Markdown docs and the `docs/...` paths named anywhere in the repository.

Usage: check_doc_links.py [-v]

1. Every relative Markdown link `[text](path)` or `[text](path#anchor)` of README.md,
   CHANGELOG.md and docs/**/*.md must name a file or directory that exists, and an anchor must
   be one of the target's headings (GitHub's slugs: lower case, punctuation dropped, spaces to
   `-`), an explicit `{#id}` or an HTML anchor `<a id="...">`.
2. Every `docs/<path>` written in a source, config, script or doc file (code comments, help
   strings, prose) must exist.
Links inside code blocks and inline code spans are not links and are not checked (step 2
still checks the `docs/...` paths they name). Exit status 1 when something is broken.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
DOCS_PATH = re.compile(r"(?<![\w./-])docs/[\w./-]*\w")


def slug(heading: str) -> str:
    text = re.sub(r"`|\*\*|\*|\[|\]\([^)]*\)", "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def prose(text: str, inline: bool = True) -> str:
    """The text without fenced code blocks (kept as blank lines) and, with `inline`, inline code spans."""
    out, fence = [], None
    for line in text.split("\n"):
        m = re.match(r"^\s*(```+|~~~+)", line)
        if fence is None and m:
            fence = m.group(1)
            out.append("")
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            out.append("")
            continue
        out.append(re.sub(r"(`+)(?!`).+?(?<!`)\1(?!`)", "", line) if inline else line)
    return "\n".join(out)


def anchors(path: Path, cache: dict[Path, set[str]]) -> set[str]:
    if path not in cache:
        found: set[str] = set()
        counts: dict[str, int] = {}
        for line in prose(path.read_text(encoding="utf-8"), inline=False).split("\n"):
            found.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", line))
            m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
            if not m:
                continue
            title = m.group(1)
            explicit = re.search(r"\{#([\w-]+)\}\s*$", title)
            if explicit:
                found.add(explicit.group(1))
                title = title[: explicit.start()]
            s = slug(title)
            n = counts.get(s, 0)
            counts[s] = n + 1
            found.add(s if n == 0 else f"{s}-{n}")
        cache[path] = found
    return cache[path]


def markdown_files() -> list[Path]:
    return [REPO / "README.md", REPO / "CHANGELOG.md"] + sorted((REPO / "docs").rglob("*.md"))


def check_links(verbose: bool) -> list[str]:
    problems, cache, count = [], {}, 0
    for md in markdown_files():
        text = prose(md.read_text(encoding="utf-8"))
        for no, line in enumerate(text.split("\n"), 1):
            for m in LINK.finditer(line):
                target = m.group(1) or m.group(2)
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                count += 1
                where = f"{md.relative_to(REPO)}:{no}"
                path_part, _, anchor = target.partition("#")
                dest = (md.parent / path_part).resolve() if path_part else md
                if not dest.exists():
                    problems.append(f"{where}: broken link {target} (no {path_part})")
                    continue
                if anchor and dest.suffix == ".md" and anchor not in anchors(dest, cache):
                    problems.append(f"{where}: broken link {target} (no heading #{anchor} in {dest.relative_to(REPO)})")
    if verbose:
        print(f"{count} relative links checked", file=sys.stderr)
    return problems


def check_named_paths(verbose: bool) -> list[str]:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    problems, count = [], 0
    for rel in files:
        path = REPO / rel
        if path.suffix not in {".md", ".hpp", ".cpp", ".h", ".py", ".pyi", ".txt", ".cmake", ".toml", ".sh", ".in"} \
                or not path.is_file():
            continue
        for no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").split("\n"), 1):
            for m in DOCS_PATH.finditer(line):
                name = m.group(0).rstrip(".")
                if "*" in name or "<" in name:
                    continue
                count += 1
                if not (REPO / name).exists():
                    problems.append(f"{rel}:{no}: names {name}, which does not exist")
    if verbose:
        print(f"{count} docs/ paths checked", file=sys.stderr)
    return problems


def main() -> int:
    verbose = "-v" in sys.argv[1:]
    problems = check_links(verbose) + check_named_paths(verbose)
    for p in problems:
        print(p)
    print(f"check_doc_links: {len(problems)} broken")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
