#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine (as root): installs the peers, then runs pytest.
# Extra arguments go to pytest.  AIOSPICE_SOAK=1 runs the long soaks instead of their short versions.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/install-deps.sh" --test
cd "$here"
python3 -m ruff check spice usbredir tests
# hypothesis works without its pytest plugin; the plugin once crashed a whole run at exit
# ("AST constructor recursion depth mismatch" inside it), so it is left out.
exec python3 -m pytest -q -rs -p no:hypothesispytest "$@"
