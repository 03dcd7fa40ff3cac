# Finding and ending a test's own processes with nothing but /proc and the shell (no procps:
# pgrep and pkill are not in a minimal system). Source it: . tests/procs.sh
#   procs_with TEXT      pids whose command line contains TEXT (arguments joined by spaces)
#   procs_started_with TEXT  pids whose command line starts with TEXT (a program, not its launcher)
#   procs_kill_in DIR    SIGKILL to every process working in DIR (a test's scratch folder: the
#                        jobs it started, mpirun's ranks included, and nobody else's: another
#                        run of the same test elsewhere has the same command lines)
# The calling shell itself is never included.
procs_with() { procs_match any "$1"; }
procs_started_with() { procs_match start "$1"; }
procs_match() {
    for d in /proc/[0-9]*; do
        p=${d#/proc/}
        [ "$p" = "$$" ] && continue
        c=$(tr '\0' ' ' 2>/dev/null < "$d/cmdline") || continue
        if [ "$1" = start ]; then case "$c" in "$2"*) echo "$p";; esac
        else case "$c" in *"$2"*) echo "$p";; esac; fi
    done
}
procs_kill_in() {
    dir=$(cd "$1" 2>/dev/null && pwd -P) || return 0
    for d in /proc/[0-9]*; do
        p=${d#/proc/}
        [ "$p" = "$$" ] && continue
        [ "$(readlink "$d/cwd" 2>/dev/null)" = "$dir" ] && kill -9 "$p" 2>/dev/null
    done
    return 0
}
