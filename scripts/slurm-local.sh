#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the Slurm tests (`.ci/run` calls it; needs root):
#   scripts/slurm-local.sh start   installs slurm-wlm and munge from Debian if missing, writes /etc/slurm/slurm.conf
#                                  for this host (all its CPUs, one partition), starts munged, slurmctld and slurmd
#                                  and waits until the node is idle
#   scripts/slurm-local.sh stop    stops them
set -euo pipefail
cmd=${1:-start}
host=$(hostname -s)
if [ "$cmd" = stop ]; then
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    pkill -x munged 2>/dev/null || true
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "slurm-local: run as root (it writes /etc/slurm and starts daemons)" >&2; exit 2; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm-local: installing slurm-wlm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=topiary-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
rm -f /etc/slurm/cgroup.conf   # no cgroups: processes are tracked by /proc (proctrack/linuxproc)
chown munge:munge /run/munge
[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
fail() { echo "slurm-local: $1 did not start; see /var/log/slurm/" >&2; tail -5 /var/log/slurm/*.log >&2 || true; exit 1; }
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged || fail munged
pgrep -x slurmctld >/dev/null || slurmctld || fail slurmctld
pgrep -x slurmd >/dev/null || slurmd || fail slurmd
for _ in $(seq 60); do
    state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
    case "$state" in
        idle*|mix*|alloc*) echo "slurm-local: node $host is $state ($cpus CPUs, $mem MiB)"; exit 0 ;;
        down*|drain*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
done
echo "slurm-local: the node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
tail -5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
