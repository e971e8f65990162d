#!/usr/bin/env bash
# Stop the dev cluster's daemons (the slurmd of every node, slurmctld,
# slurmdbd, mariadbd, munged -- the reverse of the start order). Idempotent: daemons that are not
# running are skipped. Only processes named by our own pid files are touched,
# so a munged/MariaDB the machine runs by itself is left alone.
#
# Jobs that are still running keep running (their slurmstepd survives slurmd)
# and are picked up again by the next start.sh; state and the accounting DB
# are kept.
#
#   stop.sh           stop the daemons
#   stop.sh --purge   also cancel all jobs, delete ORCH_SLURM_HOME
#                     (state, logs, accounting DB) and the cluster's network
#                     (bridge, node namespaces, /etc/hosts block): the next
#                     start is a fresh cluster.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

purge=0
case "${1:-}" in
  "") ;;
  --purge) purge=1 ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
  *) die "unknown argument '$1' (try --help)" ;;
esac

[[ $(id -u) -eq 0 ]] || die "must run as root"
[[ -d $STATE_DIR ]] || { log "nothing to stop ($STATE_DIR does not exist)"; exit 0; }

exec 9>"$STATE_DIR/.lock"
flock -w 600 9 || die "another start.sh/stop.sh holds $STATE_DIR/.lock"

if ((purge)) && daemon_pid slurmctld >/dev/null; then
  # Job steps outlive slurmd and nobody would reap them once the state is
  # gone, so cancel all jobs through Slurm first and give them a moment.
  jobs=$(squeue -h -o '%A' 2>/dev/null || true)
  if [[ -n $jobs ]]; then
    log "cancelling $(wc -w <<<"$jobs") job(s)"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    deadline=$((SECONDS + 15))
    while [[ -n $(squeue -h -t running,completing -o '%A' 2>/dev/null) ]] && ((SECONDS < deadline)); do
      sleep 0.2
    done
  fi
fi

# Every slurmd with a pid file (also nodes of an earlier, larger NODES), then
# the rest in reverse start order.
for name in $(slurmd_daemons_on_disk); do stop_daemon "$name" 20; done
for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
  name=${DAEMONS[i]}
  if [[ $name == mariadbd ]]; then
    stop_daemon "$name" 60   # InnoDB may need a while to flush
  else
    stop_daemon "$name" 20
  fi
done

if ((purge)); then
  # Refuse to delete anything that start.sh did not create.
  [[ -e $MARKER ]] || die "$STATE_DIR has no $(basename "$MARKER") marker; not deleting it"
  log "deleting $STATE_DIR"
  rm -rf -- "$STATE_DIR"
  log "removing the bridge $BRIDGE, the node namespaces and the $HOSTS_FILE block"
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^orchslurm-node[0-9]*$' || true); do
    ip netns del "$ns" || true   # deletes the veth pair with it
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  if grep -qxF "$HOSTS_BEGIN" "$HOSTS_FILE"; then
    kept=$(hosts_without_block)
    printf '%s\n' "$kept" >"$HOSTS_FILE"
  fi
fi
log "stopped"
