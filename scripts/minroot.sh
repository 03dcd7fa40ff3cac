#!/bin/sh
# Tries the quick start as a new user meets it: in a fresh minimal Debian 12 root (debootstrap
# --variant=minbase: no make, no compiler, no pkg-config, no procps), with this checkout's
# committed tree (git archive HEAD) copied in, as root, no terminal (CI=true, stdin /dev/null).
#   sh scripts/minroot.sh test         sh quickstart.sh test in it (make test, make DEBUG=1 test)
#   sh scripts/minroot.sh demo         sh quickstart.sh demo in it
#   sh scripts/minroot.sh cmd 'CMD'    any command in its copy of the checkout, e.g.
#                                      'sh scripts/deps.sh build && make -j2 all' (a quick first try)
# Run as root on a Debian or Ubuntu machine that reaches a Debian mirror. The bare root is made
# once in $MINROOT_BASE (default /var/tmp/minroot-base) and copied to $MINROOT (default
# /var/tmp/minroot) for every run, so each run starts from nothing; KEEP=1 reuses $MINROOT as the
# last run left it (packages installed, builds done) and only refreshes the checkout.
# The root is bind-mounted on itself (a mount point, as "/" is on a real machine) and /proc, /sys
# and /dev are mounted inside for the run (the tests need them: /dev/shm for Open MPI, private
# mount namespaces for the read-only workspace checks); all is unmounted after.
set -e
if [ "$(id -u)" != 0 ]; then
    echo "minroot: run as root (debootstrap, chroot and mounts need it)" >&2; exit 1
fi
mode=${1:-}
case "$mode" in
    test|demo) run="sh quickstart.sh $mode";;
    cmd) [ -n "${2:-}" ] || { echo "minroot: cmd needs a command" >&2; exit 2; }; run=$2;;
    *) echo "usage: sh scripts/minroot.sh test|demo|cmd 'CMD'" >&2; exit 2;;
esac
cd "$(dirname "$0")/.."
SRC=$PWD
BASE=${MINROOT_BASE:-/var/tmp/minroot-base}
ROOT=${MINROOT:-/var/tmp/minroot}
MIRROR=${MINROOT_MIRROR:-http://deb.debian.org/debian}

if [ ! -x "$BASE/bin/sh" ]; then
    command -v debootstrap >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap < /dev/null
    echo "minroot: debootstrap --variant=minbase bookworm $BASE" >&2
    debootstrap --variant=minbase bookworm "$BASE" "$MIRROR" > /dev/null
fi
if [ "${KEEP:-0}" != 1 ] || [ ! -x "$ROOT/bin/sh" ]; then
    rm -rf "$ROOT"
    cp -a "$BASE" "$ROOT"
fi
rm -rf "$ROOT/src/rlhf.c"
mkdir -p "$ROOT/src/rlhf.c"
git -C "$SRC" archive HEAD | tar -x -C "$ROOT/src/rlhf.c"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"

cleanup() { umount -R "$ROOT" 2>/dev/null || umount -lR "$ROOT" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
# the root a mount point of its own, private: `unshare -m` (the read-only workspace tests) makes
# "/" private in its namespace and fails with EINVAL where "/" is a plain directory of the host
mount --bind "$ROOT" "$ROOT" && mount --make-private "$ROOT"
mount -t proc proc "$ROOT/proc"
mount --rbind /sys "$ROOT/sys" && mount --make-rslave "$ROOT/sys"
mount --rbind /dev "$ROOT/dev" && mount --make-rslave "$ROOT/dev"

echo "minroot: in $ROOT/src/rlhf.c (commit $(git -C "$SRC" rev-parse --short HEAD)): $run" >&2
set +e
chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 CI=true /bin/sh -c "cd /src/rlhf.c && $run" < /dev/null
rc=$?
echo "minroot: exit status $rc" >&2
exit $rc
