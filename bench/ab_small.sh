#!/usr/bin/env bash
# Quick A/B of two tusd-py trees on small requests (W3-style creations, W4-style HEADs),
# alternating A,B,A,B in one time window; data on /dev/shm. For decisions that matter,
# confirm with ../shared/bench/compare.sh.
#
#   bench/ab_small.sh [-n PAIRS] [-s SECONDS] [-m create,head] A_ROOT B_ROOT [-- extra tusd-py flags]
#
# A_ROOT, B_ROOT: directories that contain a tusd_py package (e.g. a copy of the tree
# before a change, and . for the working tree). Each run starts a fresh server.
set -euo pipefail
pairs=3 seconds=8 modes=create,head
while getopts n:s:m: opt; do
  case $opt in
    n) pairs=$OPTARG ;; s) seconds=$OPTARG ;; m) modes=$OPTARG ;; *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
a_root=$(cd "$1" && pwd) b_root=$(cd "$2" && pwd)
shift 2
if [ "${1:-}" = "--" ]; then shift; fi
extra=("$@")
here=$(cd "$(dirname "$0")/.." && pwd)
py=$here/.venv/bin/python
port=$((20000 + RANDOM % 20000))

run_one() {  # label root
  local label=$1 root=$2 dir pid mode
  dir=$(mktemp -d /dev/shm/tusd-ab.XXXXXX)
  # The console script puts .venv/bin first on sys.path, so PYTHONPATH chooses the tree.
  PYTHONPATH=$root "$here/.venv/bin/tusd-py" -host 127.0.0.1 -port $port -upload-dir "$dir" ${extra[@]+"${extra[@]}"} \
    >"$dir.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null -X OPTIONS "http://127.0.0.1:$port/files/" && break
    sleep 0.1
  done
  for mode in ${modes//,/ }; do
    read -r u0 s0 < <(awk '{print $14, $15}' /proc/$pid/stat)
    result=$("$py" "$here/bench/smallload.py" --url "http://127.0.0.1:$port/files/" --mode "$mode" --seconds "$seconds")
    read -r u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
    echo "$label $mode $result cpu_user=$(((u1 - u0)))cs cpu_sys=$(((s1 - s0)))cs"
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir" "$dir.log"
}

for i in $(seq "$pairs"); do
  run_one A "$a_root"
  run_one B "$b_root"
done
