#!/bin/sh
# The house rules a reader relies on (STYLE.md): no function over 120 lines outside tests/ (a
# function that long does several jobs: split it into named steps), no C source or header over
# 1,500 lines anywhere (a file that long holds several modules). Each breach fails one check that
# names the function or the file and its length. STYLE_ROOT=DIR checks another tree (the test of
# this test plants a long function in a copy).
. "$PWD/tests/lib.sh"
MAX_FUNC=120
MAX_FILE=1500
top=${STYLE_ROOT:-$ROOT}
sources() {
    (cd "$top" && find . -name '*.[ch]' -not -path './build*' -not -path './.git/*') | sed 's|^\./||' | sort
}

# style_long_functions FILE...: "file:line name length" for each function over MAX_FUNC lines,
# counted from the first line of its signature to its closing brace. A function starts at a line
# in column 0 that is not a declaration (no ';') nor a preprocessor line, whose signature (up to the
# line ending in '{', or a '{' alone) holds a '(' and no '='; it ends at the next '}' in column 0.
style_long_functions() {
    awk -v max="$MAX_FUNC" '
    FNR == 1 { inhdr = 0; infn = 0 }
    infn {
        if ($0 ~ /^}/) {
            n = FNR - start + 1
            if (n > max) print FILENAME ":" start " " name " " n
            infn = 0
        }
        next
    }
    !inhdr && /^[A-Za-z_]/ && !/;[ \t]*$/ { inhdr = 1; start = FNR; sig = "" }
    inhdr {
        sig = sig " " $0
        if ($0 ~ /;[ \t]*(\/\/.*|\/\*.*)?$/ && $0 !~ /\{/) { inhdr = 0; next }
        if ($0 ~ /\{[ \t]*$/ || $0 ~ /^\{/) {
            inhdr = 0
            if (sig ~ /\(/ && sig !~ /=/) {
                infn = 1
                name = "?"
                if (match(sig, /[A-Za-z_][A-Za-z0-9_]*[ \t]*\(/)) {
                    name = substr(sig, RSTART, RLENGTH)
                    sub(/[ \t]*\($/, "", name)
                }
            }
        }
    }' "$@"
}

# style_big_files FILE...: "file length" for each file over MAX_FILE lines
style_big_files() { wc -l "$@" | awk -v max="$MAX_FILE" \
    '$2 != "total" && $1 > max { print $2 " " $1 }'; }

# the checker itself, on planted code: a function of 121 lines (signature on two lines) is
# named; one of 120 lines, a 200-line table and a 200-line struct are not
lib_workspace
plant() {   # plant NAME BODY_LINES: a function whose signature, body and brace make BODY_LINES + 3
    printf 'static int %s(int a,\n                 int b) {\n' "$1"
    i=0; while [ $i -lt "$2" ]; do echo "    a += b;"; i=$((i + 1)); done
    printf '}\n\n'
}
{ plant too_long 118; plant just_right 117
  echo 'static const int table[] = {'; i=0; while [ $i -lt 200 ]; do echo "    $i,"; \
      i=$((i + 1)); done
  echo '};'; echo 'struct s {'; i=0; while [ $i -lt 200 ]; do echo "    int f$i;"; \
      i=$((i + 1)); done
  echo '};'; } > "$W/planted.c"
got=$(cd "$W" && style_long_functions planted.c)
[ "$got" = "planted.c:1 too_long 121" ] &&
    ok "the checker names a planted function of 121 lines, nothing else" ||
    bad "planted code: got '$got', want 'planted.c:1 too_long 121'"
: > "$W/short.h"; sums 1501 '%d' > "$W/long.h"; sums 1500 '%d' > "$W/edge.h"
got=$(cd "$W" && style_big_files short.h long.h edge.h)
[ "$got" = "long.h 1501" ] &&
    ok "the checker names a planted file of 1,501 lines, not one of 1,500" ||
    bad "planted files: got '$got'"

files=$(sources)
[ -n "$files" ] || { bad "no C sources found under $top"; lib_summary; exit; }
nfiles=$(printf '%s\n' "$files" | wc -l)
long=$(cd "$top" && style_long_functions $(printf '%s\n' $files | grep -v '^tests/'))
if [ -z "$long" ]; then ok "no function over $MAX_FUNC lines outside tests/ ($nfiles files)"
else printf '%s\n' "$long" | while read -r where name n; do
         echo "FAIL function $name ($where) is $n lines, over $MAX_FUNC: split it into named steps"
     done
     fail=$((fail + $(printf '%s\n' "$long" | wc -l)))
fi
big=$(cd "$top" && style_big_files $files)
if [ -z "$big" ]; then ok "no C source or header over $MAX_FILE lines"
else printf '%s\n' "$big" | while read -r f n; do echo \
    "FAIL file $f is $n lines, over $MAX_FILE"; done
     fail=$((fail + $(printf '%s\n' "$big" | wc -l)))
fi
lib_summary
