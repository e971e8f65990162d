#!/usr/bin/env bash
# Start (installing first if needed) a real multi-node SLURM cluster on this
# machine: munged -> mariadbd -> slurmdbd -> slurmctld -> one slurmd per node,
# each node in its own network + UTS namespace (own address and hostname) on a
# bridge, all sharing the filesystem as cluster nodes share NFS.
#
# Idempotent: when everything already runs with the current config it only
# checks health and prints the summary line (well under a second). Daemons
# that are missing are started, stale pid files are cleared, and daemons whose
# config changed are restarted.
#
# Environment (all optional):
#   ORCH_SLURM_HOME     state/spool/pid/log folder  (/var/tmp/orchestrate-slurm)
#   ORCH_SLURM_CLUSTER  cluster name                (orchestrate)
#   NODES               compute nodes                (2; ORCH_SLURM_NODES also works)
#   ORCH_SLURM_NET      the cluster's /24 prefix      (10.77.0)
#   ORCH_SLURM_GPUS     number of fake GPUs per node (2; 0 = no gres)
#   ORCH_SLURM_DB_PORT  port of the private MariaDB  (3307, bound to 127.0.0.1)
#   ORCH_SLURM_USERS    extra users to give an accounting association
#   ORCH_SLURM_TIMEOUT  seconds to wait for each daemon (120)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

TIMEOUT="${ORCH_SLURM_TIMEOUT:-120}"
T0=$(date +%s.%N)

[[ $(id -u) -eq 0 ]] || die "must run as root (daemons run as root/munge/mysql)"
[[ $FAKE_GPUS =~ ^[0-9]+$ ]] || die "ORCH_SLURM_GPUS must be a number, got '$FAKE_GPUS'"
[[ $NODE_COUNT =~ ^[1-9][0-9]?$ ]] && ((NODE_COUNT <= 200)) \
  || die "NODES must be a number from 1 to 200, got '$NODE_COUNT'"
[[ $NET_PREFIX =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "ORCH_SLURM_NET must look like 10.77.0, got '$NET_PREFIX'"

# ------------------------------------------------------------------ install --
REQUIRED_CMDS=(ip nsenter unshare munged munge unmunge mariadbd mariadb-install-db mariadb
               slurmdbd slurmctld slurmd sinfo sbatch srun scontrol sacct sacctmgr)
PACKAGES=(iproute2 munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
# Node environments the `slurm` tests run jobs through: Lmod (`module load`) and Charliecloud's
# ch-run. charliecloud-runtime, not the `charliecloud` metapackage: that one adds the image
# builders (docker.io, buildah), which running an image does not need.
# squashfs-tools (mksquashfs) makes the squashfs image; ch-run mounts it with squashfuse.
REQUIRED_CMDS+=(ch-run mksquashfs squashfuse)
REQUIRED_FILES=(/usr/share/lmod/lmod/init/bash)
PACKAGES+=(lmod charliecloud-runtime squashfs-tools squashfuse)

install_packages() {
  local missing=() c
  for c in "${REQUIRED_CMDS[@]}"; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  for c in "${REQUIRED_FILES[@]}"; do
    [[ -e $c ]] || missing+=("$c")
  done
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them (Debian/Ubuntu only)"
  log "installing ${PACKAGES[*]} (missing: ${missing[*]})"

  # Keep the packages' maintainer scripts from starting their own daemons
  # (with the packaged configs) via invoke-rc.d/systemd: we run our own.
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT   # also if we are interrupted
  fi
  local rc=0 aptlog="$STATE_DIR/apt-install.log"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "${PACKAGES[@]}" >"$aptlog" 2>&1 9>&-; then
    log "apt-get install failed; running apt-get update and retrying"
    { apt-get update && apt-get install -y --no-install-recommends "${PACKAGES[@]}"; } >>"$aptlog" 2>&1 9>&- || rc=$?
  fi
  if ((added_policy)); then rm -f "$policy"; trap - EXIT; fi
  if ((rc != 0)); then
    tail -n 30 "$aptlog" >&2
    die "package installation failed (full log: $aptlog)"
  fi
  for c in "${REQUIRED_CMDS[@]}"; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' still missing after installing packages"
  done
  for c in "${REQUIRED_FILES[@]}"; do
    [[ -e $c ]] || die "'$c' still missing after installing packages"
  done
}

# ------------------------------------------------------------------- layout --
prepare_dirs() {
  mkdir -p "$ETC_DIR" "$RUN_DIR" "$LOG_DIR" "$CTLD_STATE" "$SLURMD_SPOOL" "$DEV_DIR"
  # munged and mariadbd refuse group/world-writable or foreign-owned dirs, and
  # run unprivileged, so each gets a private dir it owns.
  mkdir -p "$MUNGE_DIR" "$DB_DIR"
  chown munge:munge "$MUNGE_DIR"; chmod 700 "$MUNGE_DIR"
  chown mysql:mysql "$DB_DIR";    chmod 750 "$DB_DIR"
  chmod 755 "$STATE_DIR"
  touch "$MARKER"

  # Fake GPUs: Slurm only accepts gres File= entries that are character
  # devices; (1,3) is the same device as /dev/null.
  local i dev
  for ((i = 0; i < FAKE_GPUS; i++)); do
    dev="$DEV_DIR/fakegpu$i"
    if [[ ! -c $dev ]]; then
      rm -f "$dev"
      mknod -m 666 "$dev" c 1 3
    fi
  done

  # The munge socket dir lives in /run and vanishes on reboot.
  mkdir -p "$MUNGE_SOCKET_DIR"
  chown munge:munge "$MUNGE_SOCKET_DIR"; chmod 755 "$MUNGE_SOCKET_DIR"
}

# ------------------------------------------------------------------ network --
# A bridge in the root namespace (address CTL_ADDR: slurmctld and slurmdbd are
# reached there) and, per node, a network namespace joined to it by a veth
# pair. Each step is skipped when already in place, so this is idempotent.
prepare_network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "creating bridge $BRIDGE ($CTL_ADDR/24)"
    ip link add name "$BRIDGE" type bridge
  fi
  ip -4 addr show dev "$BRIDGE" | grep -q "inet $CTL_ADDR/" || ip addr add "$CTL_ADDR/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local i ns
  for ((i = 1; i <= NODE_COUNT; i++)); do prepare_node_netns "$i"; done
  # Namespaces of nodes beyond NODES (an earlier, larger cluster) go; a slurmd still in one
  # keeps it alive until it is stopped below.
  for ns in $(ip netns list | awk '{print $1}' | grep '^orchslurm-node[0-9]*$' || true); do
    i=${ns#orchslurm-node}
    if ((i > NODE_COUNT)); then log "removing network namespace $ns"; ip netns del "$ns"; fi
  done
  write_hosts
}

prepare_node_netns() {
  local i=$1 ns veth addr
  ns=$(node_netns "$i"); veth=$(node_veth "$i"); addr=$(node_addr "$i")
  [[ -e /run/netns/$ns ]] || { log "creating network namespace $ns ($addr)"; ip netns add "$ns"; }
  if ! ip netns exec "$ns" ip link show eth0 >/dev/null 2>&1; then
    ip link del "$veth" 2>/dev/null || true   # a host end whose peer was lost
    ip link add "$veth" type veth peer name eth0 netns "$ns"
  fi
  ip link set "$veth" master "$BRIDGE"
  ip link set "$veth" up
  ip netns exec "$ns" ip link set lo up
  ip -n "$ns" -4 addr show dev eth0 | grep -q "inet $addr/" || ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route replace default via "$CTL_ADDR"
}

# Every daemon and job resolves node names through the shared /etc/hosts (no
# DNS): our block maps nodeN to its address. Also the IPv4-mapped IPv6 form:
# torch's TCPStore (dual-stack) looks up ::ffff:10.77.0.N, which /etc/hosts
# would not answer, and the machine's DNS server is unreachable from a node's
# namespace, so each rendezvous waited 10 s for a DNS timeout.
# Edited in place (it may be a bind mount).
write_hosts() {
  local kept block i
  kept=$(hosts_without_block)
  block="$HOSTS_BEGIN"
  for ((i = 1; i <= NODE_COUNT; i++)); do
    block+=$'\n'"$(node_addr "$i") $(node_name "$i")"$'\n'"::ffff:$(node_addr "$i") $(node_name "$i")"
  done
  block+=$'\n'"$HOSTS_END"
  [[ "$(cat "$HOSTS_FILE")" == "$kept"$'\n'"$block" ]] && return 0
  printf '%s\n%s\n' "$kept" "$block" >"$HOSTS_FILE"
}

# ------------------------------------------------------------------ configs --
NODES_RANGE="node[1-$NODE_COUNT]"
((NODE_COUNT == 1)) && NODES_RANGE=node1
CHANGED=()   # names of config files whose content changed this run

# Write $2 (content) to $ETC_DIR/$1 only if different; record the change.
put_config() {
  local name=$1 content=$2 mode=${3:-644} path="$ETC_DIR/$1"
  if [[ ! -f $path ]] || [[ "$(cat "$path")" != "$content" ]]; then
    printf '%s\n' "$content" >"$path.tmp"
    chmod "$mode" "$path.tmp"
    mv -f "$path.tmp" "$path"
    CHANGED+=("$name")
  fi
}

changed() { local n; for n in "${CHANGED[@]}"; do [[ $n == "$1" ]] && return 0; done; return 1; }

render_configs() {
  # Hardware as slurmd sees it; RealMemory is set a bit below the detected
  # value because a node whose config claims more memory than it has drains.
  local hw mem cpus_line gres_line=""
  hw=$(slurmd -C 2>/dev/null | head -n1) || true
  [[ $hw == NodeName=* ]] || die "'slurmd -C' did not describe this node: $hw"
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
  cpus_line=$(sed -e 's/^NodeName=[^ ]* //' -e 's/ *RealMemory=[0-9]*//' <<<"$hw")
  ((FAKE_GPUS > 0)) && gres_line="Gres=gpu:$FAKE_GPUS"
  local node_lines="" i
  for ((i = 1; i <= NODE_COUNT; i++)); do
    node_lines+="NodeName=$(node_name "$i") NodeAddr=$(node_addr "$i") $cpus_line RealMemory=$((mem * 95 / 100)) $gres_line State=UNKNOWN"$'\n'
  done

  # Password for the slurm DB user: random, generated once, kept with the state.
  local pwfile="$ETC_DIR/db.password"
  if [[ ! -s $pwfile ]]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$pwfile")
  fi
  DB_PASS=$(cat "$pwfile")

  put_config slurm.conf "$(cat <<EOF
# Generated by slurm/dev-cluster/start.sh -- edits are overwritten.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$(hostname -s)($CTL_ADDR)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Short credential lifetime: a requeued job may only restart once the old
# credential expired (~11 s instead of ~2.5 min with the default 120).
AuthInfo=cred_expire=10
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$CTLD_STATE
# %n: the node's name, so the slurmds of the shared filesystem keep apart.
SlurmdSpoolDir=$SLURMD_SPOOL/%n
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups (works in containers/VMs without a cgroup-managing init).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none

SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# Schedule right away: a trivial job completes in <1 s instead of ~3 s.
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
# MaxArraySize is deliberately left at Slurm's default (1001).
MaxJobCount=20000
# Keep finished jobs visible to squeue/scontrol for an hour.
MinJobAge=3600
ReturnToService=2
JobRequeue=1
KillWait=5
OverTimeLimit=0
InactiveLimit=0
Waittime=0
SlurmctldTimeout=120
# A node whose slurmd stops answering is DOWN (its jobs NODE_FAIL, requeued) after 30 s, not
# Slurm's default 5 min, so the node-death test (node.sh kill) takes under a minute; slurmctld
# pings every SlurmdTimeout/3. ReturnToService=2 above: a node back up is in service again.
SlurmdTimeout=30
MailProg=/bin/true
PreemptType=preempt/none
PreemptMode=OFF

# Accounting through slurmdbd: without it sacct reports "accounting storage
# is disabled" and submitit sees every job as UNKNOWN.
AccountingStorageType=accounting_storage/slurmdbd
# On the bridge, so sacct also works inside jobs (in a node's namespace).
AccountingStorageHost=$CTL_ADDR
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none

GresTypes=gpu
${node_lines}PartitionName=debug Nodes=$NODES_RANGE Default=YES MaxTime=INFINITE State=UP
EOF
)"

  local gres="# Generated by slurm/dev-cluster/start.sh -- edits are overwritten.
# Fake GPUs: character devices (same as /dev/null), so Slurm can bind and
# count them and sets CUDA_VISIBLE_DEVICES for jobs that ask for --gres=gpu.
AutoDetect=off" i
  for ((i = 0; i < FAKE_GPUS; i++)); do
    gres+=$'\n'"NodeName=$NODES_RANGE Name=gpu File=$DEV_DIR/fakegpu$i"
  done
  put_config gres.conf "$gres"

  # slurmdbd insists on mode 600 (it holds the DB password).
  put_config slurmdbd.conf "$(cat <<EOF
# Generated by slurm/dev-cluster/start.sh -- edits are overwritten.
AuthType=auth/munge
DbdHost=$(hostname -s)
DbdAddr=$CTL_ADDR
DbdPort=6819
SlurmUser=root
PidFile=$RUN_DIR/slurmdbd.pid
LogFile=$LOG_DIR/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
)" 600

  # Private MariaDB instance: own datadir, socket, port; TCP on loopback only.
  # The InnoDB values are the minimums slurmdbd accepts without logging an error.
  put_config my.cnf "$(cat <<EOF
# Generated by slurm/dev-cluster/start.sh -- edits are overwritten.
[mysqld]
user=mysql
datadir=$DB_DIR/data
socket=$DB_SOCKET
pid-file=$DB_DIR/mariadbd.pid
log-error=$DB_DIR/mariadbd.log
bind-address=127.0.0.1
port=$DB_PORT
skip-name-resolve
innodb_buffer_pool_size=512M
innodb_log_file_size=64M
innodb_lock_wait_timeout=900
EOF
)"
}

# ------------------------------------------------------------------ waiting --
# launch NAME CMD...: start a daemon in FOREGROUND mode (-D/-F/mariadbd) as a
# background job, so that its pid is known at once (WATCH_PID) and a daemon
# that dies during start-up (port in use, bad config) is noticed immediately
# instead of at the timeout. Clean environment, own session, stdin/stdout/
# stderr away from ours (a caller capturing our output must not wait for the
# daemons) and without our lock fd 9. stderr (which also sees errors from
# before the log file is opened) goes to log/NAME.stderr.
WATCH_PID=""
launch() {
  local name=$1; shift
  clear_stale_pid "$name"
  log "starting $name"
  setsid -w "${DAEMON_ENV[@]}" SLURM_CONF="$ETC_DIR/slurm.conf" "$@" \
    </dev/null >"$LOG_DIR/$name.stderr" 2>&1 9>&- &
  WATCH_PID=$!
  disown
}

# fail NAME MESSAGE: print the daemon's log tails and exit.
fail() {
  show_log_tail "$1"
  if [[ -s $LOG_DIR/$1.stderr ]]; then
    printf -- '----- last lines of %s -----\n' "$LOG_DIR/$1.stderr" >&2
    tail -n 10 "$LOG_DIR/$1.stderr" >&2
  fi
  die "$2"
}

# wait_for DAEMON DESCRIPTION CMD...: poll CMD until it succeeds. Fails (with
# the daemon's log tail) on timeout, or as soon as the daemon just launched
# (WATCH_PID) is gone.
wait_for() {
  local name=$1 what=$2; shift 2
  local deadline=$((SECONDS + TIMEOUT))
  while ! "$@" >/dev/null 2>&1; do
    if [[ -n $WATCH_PID ]] && ! pid_alive "$WATCH_PID"; then
      fail "$name" "$name exited while waiting for: $what"
    fi
    if ((SECONDS >= deadline)); then
      fail "$name" "timed out after ${TIMEOUT}s waiting for: $what"
    fi
    sleep 0.2
  done
}

# ---------------------------------------------------------------- daemons --
munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munged() {
  if [[ ! -s $MUNGE_KEY ]]; then
    log "creating munge key $MUNGE_KEY"
    mkdir -p "$(dirname "$MUNGE_KEY")"
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile="$MUNGE_KEY"
    else
      dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
    fi
  fi
  chown munge:munge "$(dirname "$MUNGE_KEY")" "$MUNGE_KEY"
  chmod 700 "$(dirname "$MUNGE_KEY")"; chmod 400 "$MUNGE_KEY"

  # A munged we did not start (e.g. the system's own) is fine as long as it works.
  munge_ok && return 0
  stop_daemon munged 5
  # setpriv execs (no fork), unlike runuser, so WATCH_PID is munged itself.
  launch munged setpriv --reuid=munge --regid=munge --init-groups munged --foreground \
    --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
    --seed-file="$MUNGE_DIR/munged.seed" --key-file="$MUNGE_KEY"
  wait_for munged "munge credentials to round-trip" munge_ok
}

db_sql() { mariadb --no-defaults --socket="$DB_SOCKET" -uroot -N -B "$@"; }
db_ok()  { db_sql -e 'SELECT 1' >/dev/null 2>&1; }

start_mariadbd() {
  if changed my.cnf; then stop_daemon slurmdbd; stop_daemon mariadbd 60; fi
  if daemon_pid mariadbd >/dev/null && db_ok; then return 0; fi
  stop_daemon mariadbd 60

  if [[ ! -d $DB_DIR/data/mysql ]]; then
    log "initialising MariaDB datadir $DB_DIR/data"
    rm -rf "$DB_DIR/data"
    if ! mariadb-install-db --defaults-file="$ETC_DIR/my.cnf" --skip-test-db \
          --auth-root-authentication-method=socket >"$LOG_DIR/mariadb-install-db.log" 2>&1 9>&-; then
      tail -n 30 "$LOG_DIR/mariadb-install-db.log" >&2
      die "mariadb-install-db failed"
    fi
  fi
  launch mariadbd mariadbd --defaults-file="$ETC_DIR/my.cnf"
  wait_for mariadbd "MariaDB to accept connections on $DB_SOCKET (port $DB_PORT)" db_ok
}

# Create/refresh the DB account slurmdbd uses (password lives in db.password).
setup_db_user() {
  local u
  for u in "'slurm'@'localhost'" "'slurm'@'127.0.0.1'"; do
    db_sql -e "CREATE USER IF NOT EXISTS $u IDENTIFIED BY '$DB_PASS';
               ALTER USER $u IDENTIFIED BY '$DB_PASS';
               GRANT ALL ON slurm_acct_db.* TO $u;" \
      || die "could not create the slurm user in MariaDB"
  done
}

dbd_ok() { sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1; }

start_slurmdbd() {
  if changed slurmdbd.conf; then stop_daemon slurmdbd; fi
  # (A running slurmdbd that cannot reach its DB is caught by accounting_ok.)
  if daemon_pid slurmdbd >/dev/null; then return 0; fi
  stop_daemon slurmdbd
  setup_db_user
  launch slurmdbd slurmdbd -D
  # The first start creates the accounting tables, which takes a while.
  wait_for slurmdbd "slurmdbd to answer sacctmgr" dbd_ok
}

# The cluster must exist in the accounting DB before slurmctld registers, and
# users need an association for their jobs to be recorded properly.
setup_accounting() {
  local assocs users=(root) u
  assocs=$(sacctmgr -n -P list assoc format=cluster,user) || die "sacctmgr list assoc failed"
  if ! grep -q "^$CLUSTER_NAME|" <<<"$assocs" &&
     ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER_NAME"; then
    log "adding cluster $CLUSTER_NAME to the accounting database"
    sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null || die "sacctmgr add cluster failed"
  fi
  [[ -n ${SUDO_USER:-} && ${SUDO_USER} != root ]] && users+=("$SUDO_USER")
  # shellcheck disable=SC2206
  [[ -n ${ORCH_SLURM_USERS:-} ]] && users+=(${ORCH_SLURM_USERS//,/ })
  for u in "${users[@]}"; do
    grep -qx "$CLUSTER_NAME|$u" <<<"$assocs" && continue
    id "$u" >/dev/null 2>&1 || { log "skipping unknown user $u"; continue; }
    # Adding the cluster gives root an association; don't add it twice.
    [[ -n $(sacctmgr -n -P list assoc cluster="$CLUSTER_NAME" user="$u" format=user) ]] && continue
    log "adding accounting association for user $u"
    sacctmgr -i add user "$u" account=root cluster="$CLUSTER_NAME" >/dev/null \
      || die "sacctmgr add user $u failed"
  done
}

ctld_ok() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

# slurmd of node $1 in its namespaces: the network one made by prepare_network
# and a new UTS one whose hostname is the node name (what jobs, gloo and
# submitit see). nsenter, not `ip netns exec`: the latter remounts /sys, which
# hides /sys/fs/cgroup, and slurmd refuses to start without it. nsenter,
# unshare and sh all exec, so WATCH_PID is slurmd.
start_slurmd() {
  local i=$1 name
  name=$(node_name "$i")
  daemon_pid "slurmd-$name" >/dev/null && return 0
  mkdir -p "$SLURMD_SPOOL/$name"
  launch "slurmd-$name" nsenter --net="/run/netns/$(node_netns "$i")" unshare --uts \
    sh -c 'hostname "$1" && exec slurmd -D -N "$1"' sh "$name"
  wait_for "slurmd-$name" "slurmd of $name to write its pid file" daemon_pid "slurmd-$name"
}

start_slurmctld_and_slurmd() {
  local name i
  # slurm.conf/gres.conf are read by both daemons; a change needs both restarted.
  # slurmds not in this layout (an earlier, larger NODES; the one-node layout) go too.
  for name in $(slurmd_daemons_on_disk); do
    if changed slurm.conf || changed gres.conf || [[ " ${DAEMONS[*]} " != *" $name "* ]]; then
      stop_daemon "$name"
    fi
  done
  if changed slurm.conf || changed gres.conf; then
    stop_daemon slurmctld
  fi
  if ! daemon_pid slurmctld >/dev/null || ! ctld_ok; then
    stop_daemon slurmctld
    # -i: ignore unreadable/incompatible saved state instead of refusing to start.
    launch slurmctld slurmctld -D -i
    wait_for slurmctld "slurmctld to answer 'scontrol ping'" ctld_ok
  fi
  for ((i = 1; i <= NODE_COUNT; i++)); do start_slurmd "$i"; done
}

node_state() { sinfo -h -N -n "$1" -o '%T' 2>/dev/null | head -n1; }

# Wait until the node accepts work; resume it if it came back DOWN/DRAINED
# (e.g. after a restart) -- ReturnToService=2 handles most, not all, cases.
wait_node_ready() {
  local node=$1 deadline=$((SECONDS + TIMEOUT)) state last_resume=-100
  while :; do
    state=$(node_state "$node")
    case "$state" in
      idle|mixed|allocated|completing) return 0 ;;
      down|drain*|fail*)   # responding (no '*'), but not in service
        if ((SECONDS - last_resume >= 3)); then
          log "node $node is $state; resuming it"
          scontrol update nodename="$node" state=resume 2>/dev/null || true
          last_resume=$SECONDS
        fi ;;
    esac
    if ! daemon_pid "slurmd-$node" >/dev/null; then
      fail "slurmd-$node" "slurmd of $node died (node state: ${state:-unknown})"
    fi
    if ((SECONDS >= deadline)); then
      scontrol show node "$node" >&2 || true
      show_log_tail slurmctld
      fail "slurmd-$node" "node $node not ready after ${TIMEOUT}s (state: ${state:-unknown})"
    fi
    sleep 0.2
  done
}

# sacct must really reach slurmdbd, and slurmctld must have registered with
# it (ControlHost set), or finished jobs would not show up in sacct.
accounting_ok() {
  local out
  out=$(sacct -X -n -P -S now-1minutes -o JobID 2>&1) || return 1
  [[ $out != *disabled* ]] || return 1
  out=$(sacctmgr -n -P show cluster "$CLUSTER_NAME" format=ControlHost 2>/dev/null) || return 1
  [[ -n $out ]]
}

# Clients started by users (sbatch, sacct, submitit, ...) read
# /etc/slurm/*.conf: point those at our configs. Done only once the cluster
# works, so a failed start (say, of a second ORCH_SLURM_HOME) leaves a working
# cluster's links alone.
link_system_configs() {
  mkdir -p "$SYS_SLURM_ETC"
  local f target
  for f in slurm.conf gres.conf slurmdbd.conf; do
    target="$SYS_SLURM_ETC/$f"
    [[ -L $target && $(readlink "$target") == "$ETC_DIR/$f" ]] && continue
    if [[ -e $target && ! -L $target && ! -e $target.orig-before-dev-cluster ]]; then
      log "moving existing $target to $target.orig-before-dev-cluster"
      mv "$target" "$target.orig-before-dev-cluster"
    fi
    ln -sfn "$ETC_DIR/$f" "$target"
  done
}

# --------------------------------------------------------------------- main --
mkdir -p "$STATE_DIR"
# Serialise concurrent invocations (parallel test workers, say).
exec 9>"$STATE_DIR/.lock"
flock -w 600 9 || die "another start.sh/stop.sh holds $STATE_DIR/.lock"

install_packages
prepare_dirs
prepare_network
render_configs
start_munged
start_mariadbd
start_slurmdbd
setup_accounting
start_slurmctld_and_slurmd
for ((n = 1; n <= NODE_COUNT; n++)); do wait_node_ready "$(node_name "$n")"; done
if ! accounting_ok; then
  wait_for slurmdbd "sacct to work and slurmctld to register with slurmdbd" accounting_ok
fi
link_system_configs

max_array=$(scontrol show config | sed -n 's/^MaxArraySize *= *//p')
read -r cpus gres < <(sinfo -h -N -n node1 -o '%c %G' | head -n1)
gpus=$(sed -n 's/.*gpu:\([0-9]*\).*/\1/p' <<<"$gres"); gpus=${gpus:-0}
states=$(sinfo -h -N -o '%N=%T' | sort -u | paste -sd, -)
elapsed=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
echo "slurm dev cluster ready: cluster=$CLUSTER_NAME nodes=$NODE_COUNT [$states] cpus/node=$cpus gpus/node=$gpus(fake) MaxArraySize=$max_array home=$STATE_DIR (${elapsed}s)"
