#!/usr/bin/env bash
# Copies the small result files of a calibration folder (bench/calibrate.sh, calibrate_gpu.sh) to
# DEST, keeping the layout: results, sweep.json, settings, recommend*.json, timings, each run's
# train_summary.json and metrics.jsonl (sweep parts and CASE/pattern runs alike, with the pattern
# runs' checked settings lr*.settings.json), each case's evidence.json compressed (evidence.json.xz,
# for bench/redecide.sh), the last 50 lines of each log; no adapter weights.
# The copy is enough for calibrate_report.py and, unpacked into OUT, for calibrate_gpu.sh to resume
# (interrupted runs restart unless WITH_CHECKPOINTS=1 also copies their checkpoints).
# Usage: bench/calibrate_collect.sh OUT DEST   (DEST ending .tar.gz/.tar.xz/.tgz: one archive)
# METRICS=0 leaves out metrics.jsonl (the largest of these files).
set -euo pipefail
src=$1 dest=$2
archive=""
case $dest in
  *.tar.gz | *.tgz | *.tar.xz | *.tar)
    archive=$(realpath -m "$dest")
    dest=$(mktemp -d)
    trap 'rm -rf "$dest"' EXIT
    ;;
esac
mkdir -p "$dest"
dest=$(realpath "$dest")
names=(-name results.jsonl -o -name sweep.json -o -name sweep_config.json -o -name 'recommend*.json'
  -o -name '*.seconds' -o -name train_summary.json -o -name '*.settings.json')
[ "${METRICS:-1}" = 0 ] || names+=(-o -name metrics.jsonl)
[ -z "${WITH_CHECKPOINTS:-}" ] || names+=(-o -name checkpoint.safetensors)
cd "$src"
find . -type f \( "${names[@]}" \) -exec cp --parents -t "$dest" {} +
find . -type f -name '*.log' -print0 | while IFS= read -r -d '' log; do
  mkdir -p "$dest/$(dirname "$log")"
  tail -n 50 "$log" > "$dest/$log"
done
find . -type f -name evidence.json -print0 | while IFS= read -r -d '' ev; do
  mkdir -p "$dest/$(dirname "$ev")"
  xz -c "$ev" > "$dest/$ev.xz"
done
if [ -n "$archive" ]; then
  tar -caf "$archive" -C "$dest" .
  echo "$archive: $(du -h "$archive" | cut -f1)"
else
  echo "$dest: $(du -sh "$dest" | cut -f1)"
fi
