# Sourced by the GPU study scripts (cifar10_*.sh) once they have set PYTHON,
# ZIP, DATA_DIR, CACHE, RESULTS, METHODS, SEEDS, PARALLEL and the
# `train.experiments` options in `args`: decodes the data once, then trains
# every (method, seed), one after another or (PARALLEL=1) side by side on one
# GPU, each with an equal share of its memory and its log in $RESULTS/logs/.
if [[ -n "${DATA_DIR:-}" ]]; then
  args+=(--data-dir "$DATA_DIR")
  ZIP=""
else
  args+=(--zip "$ZIP")
fi
read -ra extra <<< "${EXTRA:-}"
args+=("${extra[@]}")

# Decode the data once, before any concurrent run could race to do it.
"$PYTHON" -c "import sys; from train import study_data as e; \
e.prepare_data(sys.argv[1] or None, sys.argv[2] or None, sys.argv[3], 0)" \
  "$ZIP" "${DATA_DIR:-}" "$CACHE"

if [[ "${PARALLEL:-0}" == 1 ]]; then
  IFS=, read -ra methods <<< "$METHODS"
  IFS=, read -ra seeds <<< "$SEEDS"
  n=$(( ${#methods[@]} * ${#seeds[@]} ))
  export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-$(
    "$PYTHON" -c "print(round(0.9 / $n, 2))")}
  mkdir -p "$RESULTS/logs"
  pids=()
  for m in "${methods[@]}"; do
    for s in "${seeds[@]}"; do
      "$PYTHON" -m train.experiments --methods "$m" "${args[@]}" --seeds "$s" \
        > "$RESULTS/logs/$m-s$s.log" 2>&1 &
      pids+=($!)
    done
  done
  status=0
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  "$PYTHON" -m train.experiments --summary-only --out "$RESULTS"
  exit $status
fi
"$PYTHON" -m train.experiments --methods "$METHODS" "${args[@]}"
