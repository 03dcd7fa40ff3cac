#!/bin/sh
# rlhf serve in headless Chromium (tests/web_browser.py, python3-selenium with Debian's chromium
# and chromium-driver, installed by scripts/deps.sh test): two labelers rank, tie, flag, skip and
# undo with the keyboard and the mouse, and the database holds exactly that; an admin sees the
# dashboard and its charts. Screenshots in BUILD/web-screenshots/. About 20 seconds.
. "$PWD/tests/lib.sh"
ROOT="$ROOT" BUILD="$BUILD" /usr/bin/python3 "$TESTS/web_browser.py"
