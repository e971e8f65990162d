#!/usr/bin/env bash
# Show whether each dev-cluster daemon runs, and the node as Slurm sees it.
# Exit status: 0 if all daemons run, 1 otherwise.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

all=0
seen=()
for name in "${DAEMONS[@]}" $(slurmd_daemons_on_disk); do
  [[ " ${seen[*]-} " == *" $name "* ]] && continue
  seen+=("$name")
  if pid=$(daemon_pid "$name"); then
    printf '%-14s running  pid %-8s log %s\n' "$name" "$pid" "$(log_file_of "$name")"
  elif [[ $name == munged ]] && munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    printf '%-14s running  (not started by dev-cluster)\n' "$name"
  else
    printf '%-14s STOPPED  log %s\n' "$name" "$(log_file_of "$name")"
    [[ " ${DAEMONS[*]} " == *" $name "* ]] && all=1
  fi
done
if ((all == 0)); then
  sinfo -N -o '%N %T %c %m %G' 2>/dev/null || true
fi
exit "$all"
