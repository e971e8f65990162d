#!/usr/bin/env bash
# Kill one node of the dev cluster as a power cut would, or bring it back.
#
#   node.sh kill NAME    SIGKILL every process in NAME's network namespace: its slurmd, the
#                        slurmstepd of each job on it and the jobs' own processes (killing slurmd
#                        alone leaves the jobs running: slurmstepd outlives it). slurmctld marks
#                        the node DOWN once it has not answered for SlurmdTimeout (30 s here) and
#                        its jobs NODE_FAIL; batch jobs are requeued (JobRequeue=1). Returns once
#                        nothing runs in the namespace; it does not wait for slurmctld.
#   node.sh start NAME   start.sh: restarts every missing slurmd (NAME's among them) and waits until
#                        each node is in service again (ReturnToService=2; resumed if still DOWN).
#
# Any other job on NAME dies with it, as on a real cluster: tests sharing the cluster may see a
# NODE_FAIL of their own (requeued).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d'; }

[[ $# -eq 2 ]] || { usage >&2; exit 2; }
action=$1 name=$2
[[ $name =~ ^node([1-9][0-9]*)$ ]] && ((BASH_REMATCH[1] <= NODE_COUNT)) \
  || die "no node '$name' in this cluster (node1..node$NODE_COUNT)"
index=${BASH_REMATCH[1]}

case "$action" in
  start) exec bash "$HERE/start.sh" ;;
  kill) ;;
  *) usage >&2; exit 2 ;;
esac

[[ $(id -u) -eq 0 ]] || die "must run as root"
ns=$(node_netns "$index")
[[ -e /run/netns/$ns ]] || die "network namespace $ns does not exist (start.sh makes it)"
# Not while start.sh/stop.sh run: they may be starting this very slurmd.
exec 9>"$STATE_DIR/.lock"
flock -w 600 9 || die "another start.sh/stop.sh holds $STATE_DIR/.lock"

# Killed processes may have forked just before (a slurmstepd starting a step): kill again until
# the namespace is empty. Zombies have left it already (no namespace to be in).
deadline=$((SECONDS + 20))
while pids=$(ip netns pids "$ns") && [[ -n $pids ]]; do
  ((SECONDS < deadline)) || die "processes still in $ns after 20 s: $(tr '\n' ' ' <<<"$pids")"
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  sleep 0.1
done
log "killed $name: nothing runs in $ns; slurmctld marks it DOWN after SlurmdTimeout"
