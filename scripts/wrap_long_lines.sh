#!/bin/sh
# Wraps the lines of C files that are over 100 characters (clang-format on those lines only, with
# .clang-format), leaving the rest of each file as written.
# Usage: sh scripts/wrap_long_lines.sh FILE...
set -eu
for f in "$@"; do
    ranges=$(awk 'length > 100 { printf "--lines=%d:%d ", NR, NR }' "$f")
    [ -n "$ranges" ] || continue
    # shellcheck disable=SC2086
    clang-format -i --style=file $ranges "$f"
done
