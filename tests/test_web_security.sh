#!/bin/sh
# rlhf serve's HTTP security matrix (tests/web_security.py, Python's standard library): no cookie,
# wrong or expired sessions and tokens, a labeler submitting another's claim or opening the admin
# pages, missing or wrong CSRF tokens, oversized bodies, headers and URLs, slow clients, path
# traversal, SQL metacharacters and HTML in the data; each with its status and the database
# unchanged; the login rate limit. About 10 seconds.
. "$PWD/tests/lib.sh"
ROOT="$ROOT" BUILD="$BUILD" /usr/bin/python3 "$TESTS/web_security.py"
