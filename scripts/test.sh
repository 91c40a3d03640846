#!/usr/bin/env bash
# The test command (what CI runs through .ci/run): make sure the environment is
# installed (scripts/setup.sh --install-only), then run the test suite.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --install-only || { echo "test.sh: installing the environment failed" >&2; exit 1; }
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    # pytest's "no tests collected": the suite is missing, which is a failure here.
    echo "test.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
