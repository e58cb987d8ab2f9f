#!/usr/bin/env bash
# The rule again, on the evidence calibrate.sh saved, with other options and no GPU: per case
# folder, `lorank recommend --evidence` writes recommend$TAG.json for calibrate_report.py --tag TAG.
#   bench/redecide.sh LORANK TAG RESULTS_DIR... [-- recommend options]
# Evidence is read from evidence$FROM.json or evidence$FROM.json.xz (FROM, default empty).
set -euo pipefail
lorank=${1:?usage: redecide.sh LORANK TAG RESULTS_DIR... [-- options]}; tag=${2:?TAG}; shift 2
dirs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do dirs+=("$1"); shift; done
[ $# -gt 0 ] && shift
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
n=0
for out in "${dirs[@]}"; do
  for dir in "$out"/*/; do
    ev="$dir/evidence${FROM:-}.json"
    if [ -f "$ev.xz" ]; then xz -dc "$ev.xz" > "$tmp"; ev=$tmp; fi
    [ -f "$ev" ] || continue
    "$lorank" recommend --evidence "$ev" --json --quiet "$@" > "$dir/recommend$tag.json.tmp"
    mv "$dir/recommend$tag.json.tmp" "$dir/recommend$tag.json"
    n=$((n + 1))
  done
done
echo "redecided $n cases (recommend$tag.json)"
