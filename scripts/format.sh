#!/usr/bin/env bash
# Formats every C++ file of the tree with clang-format (the style is .clang-format);
# --check changes nothing and fails naming each file that is not formatted.
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
command -v "$CLANG_FORMAT" > /dev/null || { echo "format: $CLANG_FORMAT not found (Debian: apt-get install clang-format)" >&2; exit 2; }
if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
  mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.cpp' '*.hpp' '*.h')
else
  mapfile -t files < <(find include src tools tests python bench fuzz -name '*.cpp' -o -name '*.hpp' -o -name '*.h')
fi
existing=()
for f in "${files[@]}"; do [ -f "$f" ] && existing+=("$f"); done
files=("${existing[@]}")
if [ "${1:-}" = "--check" ]; then
  if ! out=$("$CLANG_FORMAT" --dry-run -Werror "${files[@]}" 2>&1); then
    echo "format: not formatted (run scripts/format.sh):" >&2
    grep -o '^[^:]*:[0-9]*:[0-9]*: error' <<< "$out" | cut -d: -f1 | sort -u | sed 's/^/  /' >&2
    exit 1
  fi
  echo "format: ${#files[@]} files formatted"
else
  "$CLANG_FORMAT" -i "${files[@]}"
fi
