#!/bin/bash
# lblc / lblcr with held, strictly sequential connections (VS/DR) from 198.18.0.2
set -u
. "$LAB_DIR/scenarios/lib.sh"
trap lab_cleanup EXIT
topo_dr
start_servers
wait_net

# one_run SCHED N W1 W2 W3
one_run() {
  local sched=$1 n=$2 i; shift 2
  local -a ws=("$@")
  fresh_director
  wait_net
  golden_header "VS/DR (-g), scheduler $sched, weights ${ws[*]} (rs1,rs2,rs3 added in that order)"
  section "setup"
  vsadm -A -t "$VIP:80" -s "$sched"
  for i in 0 1 2; do vsadm -a -t "$VIP:80" -r "${RS[$i]}:80" -g -w "${ws[$i]}"; done
  vsadm -Ln
  show_held "$n connections from 198.18.0.2, one at a time, 0.05 s apart" -n "$n" --gap 0.05
  section "after release"
  sleep 1
  vsadm -Ln
}

one_run lblc  8  1 1 1 > "$OUT/1-lblc-111.txt" 2>&1
one_run lblcr 10 1 1 1 > "$OUT/2-lblcr-111.txt" 2>&1
one_run lblc  8  4 1 1 > "$OUT/3a-lblc-411.txt" 2>&1
one_run lblcr 10 4 1 1 > "$OUT/3b-lblcr-411.txt" 2>&1
for f in "$OUT"/*.txt; do echo "##### ${f##*/}"; grep -E '^(sequence|counts):' "$f"; done
