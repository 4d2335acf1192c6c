#!/usr/bin/env bash
# Issue [8/8] acceptance 2, measured: an uninterrupted build and a build killed with SIGKILL inside every stage
# (then re-run until it completes) must give the same release bytes (SHA256SUMS equal).
# Usage: benchmarks/build_kill_resume.sh RECIPE OUTDIR   (a small recipe keeps it to minutes)
set -uo pipefail
RECIPE=${1:?recipe}; OUT=${2:?out dir}
MOXIN=${MOXIN:-moxin}
RUN="$OUT/$(python3 -c "import tomllib,sys; print(tomllib.load(open(sys.argv[1],'rb'))['run']['name'])" "$RECIPE")"
rm -rf "$RUN"
"$MOXIN" build "$RECIPE" --out "$OUT" > "$OUT/uninterrupted.log" 2>&1 || { echo "uninterrupted build failed"; exit 1; }
cp "$RUN/release/SHA256SUMS" "$OUT/SHA256SUMS.uninterrupted"
rm -rf "$RUN"
kills=0
for stage in data selfdata pretrain finetune-sft eval release verify; do
  "$MOXIN" build "$RECIPE" --out "$OUT" > "$OUT/kill-$stage.log" 2>&1 &
  pid=$!
  # wait until this stage has started (its banner is printed), then let it work for a moment and kill -9
  for _ in $(seq 1 600); do grep -q "\] $stage: " "$OUT/kill-$stage.log" 2>/dev/null && break; sleep 0.5; done
  sleep "${KILL_DELAY:-3}"
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; kills=$((kills + 1)); echo "killed in stage $stage"; fi
  wait "$pid" 2>/dev/null
done
"$MOXIN" build "$RECIPE" --out "$OUT" > "$OUT/final.log" 2>&1 || { echo "resumed build failed"; exit 1; }
if cmp -s "$OUT/SHA256SUMS.uninterrupted" "$RUN/release/SHA256SUMS"; then
  echo "{\"kills\": $kills, \"release_identical\": true, \"files\": $(wc -l < "$RUN/release/SHA256SUMS")}"
else
  echo "{\"kills\": $kills, \"release_identical\": false}"; diff "$OUT/SHA256SUMS.uninterrupted" "$RUN/release/SHA256SUMS" | head; exit 1
fi
