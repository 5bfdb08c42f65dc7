#!/usr/bin/env bash
# make run: a 3-node gridd cluster on loopback, 4 pricing workers, a
# 20,000-task Monte Carlo option pricing workload, and the leader killed
# (SIGKILL) at 40% of the results. Needs bin/gridd, bin/pricing and
# bin/demo (make build).
# Extra arguments go to the demo (see bin/demo -h), e.g. -tasks 5000.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -x bin/demo ]]; then
	exec bin/demo "$@"
fi
exec go run ./examples/demo "$@"
