# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the scripts that source this
# Shared settings and helpers for start.sh / stop.sh / status.sh.
# Sourced, not executed.

# ---------------------------------------------------------------- settings --
# Everything the dev cluster writes at run time (state, spool, pids, logs,
# MariaDB datadir, fake GPU devices) lives under this one folder.
STATE_DIR="${ORCH_SLURM_HOME:-/var/tmp/orchestrate-slurm}"
CLUSTER_NAME="${ORCH_SLURM_CLUSTER:-orchestrate}"
# Number of fake GPUs (character devices) the node advertises; 0 disables gres.
FAKE_GPUS="${ORCH_SLURM_GPUS:-2}"
# Our own MariaDB instance listens on 127.0.0.1 only, on a non-default port so
# it never collides with a MariaDB/MySQL the machine may already run.
DB_PORT="${ORCH_SLURM_DB_PORT:-3307}"
# Number of compute nodes: one slurmd each, in its own network (and UTS)
# namespace, on a bridge in the root namespace. NODES wins over ORCH_SLURM_NODES.
NODE_COUNT="${NODES:-${ORCH_SLURM_NODES:-2}}"
# The cluster's private /24: the bridge (slurmctld, slurmdbd) is .1, node i is .(10+i).
NET_PREFIX="${ORCH_SLURM_NET:-10.77.0}"
BRIDGE=orchslurm0
CTL_ADDR="$NET_PREFIX.1"
HOSTS_FILE=/etc/hosts
HOSTS_BEGIN="# begin orchestrate slurm dev cluster (slurm/dev-cluster/start.sh)"
HOSTS_END="# end orchestrate slurm dev cluster"

ETC_DIR="$STATE_DIR/etc"           # generated configs (the real files)
RUN_DIR="$STATE_DIR/run"           # slurm pid files
LOG_DIR="$STATE_DIR/log"           # slurm daemon logs
CTLD_STATE="$STATE_DIR/slurmctld"  # StateSaveLocation
SLURMD_SPOOL="$STATE_DIR/slurmd"   # SlurmdSpoolDir
MUNGE_DIR="$STATE_DIR/munge"       # munged pid/log/seed (owned by munge)
DB_DIR="$STATE_DIR/mariadb"        # MariaDB datadir, socket, pid, log (owned by mysql)
DEV_DIR="$STATE_DIR/dev"           # fake GPU character devices
MARKER="$STATE_DIR/.orchestrate-slurm-dev-cluster"

# Slurm's clients (sbatch, sinfo, sacct, submitit...) read /etc/slurm/*.conf
# unless SLURM_CONF is set, so the generated configs are symlinked there.
SYS_SLURM_ETC=/etc/slurm
# munge clients (and Slurm's auth/munge) use the compiled-in socket and key.
MUNGE_SOCKET_DIR=/run/munge
MUNGE_KEY=/etc/munge/munge.key

DB_SOCKET="$DB_DIR/mysqld.sock"

# Node i: name, address, network namespace, host-side veth.
node_name() { echo "node$1"; }
node_addr() { echo "$NET_PREFIX.$((10 + $1))"; }
node_netns() { echo "orchslurm-node$1"; }
node_veth() { echo "orchslurm$1"; }

# Daemons, in start order: one slurmd per node, named slurmd-NODE (pid file
# run/slurmd-NODE.pid, log log/slurmd-NODE.log). stop.sh walks the list
# backwards, plus any slurmd-* left over from a larger NODES (and the
# single-node layout's plain `slurmd`).
DAEMONS=(munged mariadbd slurmdbd slurmctld)
for ((_i = 1; _i <= NODE_COUNT; _i++)); do DAEMONS+=("slurmd-$(node_name "$_i")"); done
unset _i

# slurmd daemons with a pid file, whether or not they belong to NODE_COUNT.
slurmd_daemons_on_disk() {
  local pf
  for pf in "$RUN_DIR"/slurmd-*.pid "$RUN_DIR"/slurmd.pid; do
    [[ -e $pf ]] && basename "$pf" .pid
  done
  return 0
}

# /etc/hosts without our block (exact line match: the markers hold slashes).
hosts_without_block() {
  awk -v b="$HOSTS_BEGIN" -v e="$HOSTS_END" '$0 == b {skip = 1} !skip {print} $0 == e {skip = 0}' "$HOSTS_FILE"
}

# The process name (comm) of daemon $1.
comm_of() {
  case "$1" in
    slurmd-*) echo slurmd ;;
    *)        echo "$1" ;;
  esac
}

# Clean, minimal environment for daemons (what an init system would give).
DAEMON_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)

# Our own client calls (sinfo, sacctmgr, ...) use the config we write,
# whatever the caller's environment and whatever /etc/slurm points at.
export SLURM_CONF="$ETC_DIR/slurm.conf"

# ---------------------------------------------------------------- helpers --
log()  { printf '[dev-cluster] %s\n' "$*" >&2; }
die()  { printf '[dev-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

pid_file_of() {
  case "$1" in
    munged)   echo "$MUNGE_DIR/munged.pid" ;;
    mariadbd) echo "$DB_DIR/mariadbd.pid" ;;
    *)        echo "$RUN_DIR/$1.pid" ;;
  esac
}

log_file_of() {
  case "$1" in
    munged)   echo "$MUNGE_DIR/munged.log" ;;
    mariadbd) echo "$DB_DIR/mariadbd.log" ;;
    *)        echo "$LOG_DIR/$1.log" ;;
  esac
}

# True if process $1 exists and is not a zombie. Orphaned daemons are reaped
# by PID 1, which in containers/VMs without a real init may take seconds;
# until then the zombie still answers kill -0 and has a /proc entry.
pid_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }          # drop "pid (comm) ", comm may contain spaces
  [[ ${stat%% *} != [ZX] ]]
}

# Print the pid of daemon $1 if its pid file names a live process that really
# is that daemon (pids get reused after a reboot); otherwise return 1.
daemon_pid() {
  local name=$1 pf pid comm
  pf=$(pid_file_of "$name")
  [[ -r $pf ]] || return 1
  pid=$(tr -dc '0-9' <"$pf" 2>/dev/null) || return 1
  [[ -n $pid ]] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "$(comm_of "$name")" ]] || return 1
  pid_alive "$pid" || return 1
  echo "$pid"
}

# Remove a pid file that does not point at the live daemon. Needed because
# slurmctld/slurmd/slurmdbd SIGTERM whatever pid their old pid file names.
clear_stale_pid() {
  local pf
  pf=$(pid_file_of "$1")
  if [[ -e $pf ]] && ! daemon_pid "$1" >/dev/null; then
    rm -f "$pf"
  fi
}

# Print the last lines of daemon $1's log to stderr.
show_log_tail() {
  local lf
  lf=$(log_file_of "$1")
  if [[ -s $lf ]]; then
    printf -- '----- last lines of %s -----\n' "$lf" >&2
    tail -n "${2:-25}" "$lf" >&2
    printf -- '----- end of %s -----\n' "$lf" >&2
  else
    printf '(no log at %s)\n' "$lf" >&2
  fi
}

# Stop daemon $1: SIGTERM, wait up to $2 seconds (default 20), then SIGKILL.
stop_daemon() {
  local name=$1 timeout=${2:-20} pid deadline
  if ! pid=$(daemon_pid "$name"); then
    clear_stale_pid "$name"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + timeout))
  while pid_alive "$pid"; do
    if ((SECONDS >= deadline)); then
      log "$name did not exit within ${timeout}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      break
    fi
    sleep 0.1
  done
  rm -f "$(pid_file_of "$name")"
}
