#!/usr/bin/env bash
# Reproduces Mandal & Guo, "Improving Defensive Distillation using Teacher Assistant"
# (sections V and VI) from the flagfiles in flags/: for each experiment it trains the chains,
# evaluates them, and finally redraws the figures from the results CSVs.
#
#   ./reproduce.sh                 paper scale (GPU-sized): mnist_takd cifar10_takd
#                                  mnist_multistep cifar10_multistep      -> figures/paper/
#   ./reproduce.sh --cpu           what a 2-core CPU finishes in about 2.5 hours: mnist_cpu
#                                  mnist_multistep_cpu                    -> figures/cpu/
#                                  then smoothed_kd_cpu (about 35 minutes more)
#   ./reproduce.sh --quick         the same pipeline at toy size in minutes: smoke
#                                                                         -> runs/smoke/figures/
#                                  then smoothed_kd_quick (about a minute more)
#   ./reproduce.sh --quick --data_dir=../shared/data    extra arguments go to
#                                  keras_takd.main; --data_dir and --output_dir (the flags the two
#                                  share) go to keras_takd.takd.evaluate too
#   ./reproduce.sh --quick --dry_run    print the commands instead of running them
#   ./reproduce.sh --quick --executor=ray   evaluate the units as Ray tasks on a local Ray
#                                  (pip install -e ".[ray]"); --executor, --ray_address,
#                                  --cpus_per_unit, --gpus_per_unit and --max_retries go to
#                                  keras_takd.takd.evaluate only
#   ./reproduce.sh --cpu --parallel     run the experiments side by side (each trains and
#                                  evaluates in its own process); the attacks on small batches
#                                  keep about one core busy each (top: 100% and 93% for the
#                                  two --cpu evaluations on 2 cores)
#
# Per experiment <exp>:
#   python -m keras_takd.main          --flagfile=flags/<exp>.cfg      [extra arguments]
#   python -m keras_takd.takd.evaluate --flagfile=flags/<exp>_eval.cfg [--data_dir, --output_dir]
# then once: python -m keras_takd.takd.figures --results=<each run's results.csv>
# --output_dir=<figures>, python -m keras_takd.takd.claims (our numbers beside the papers'
# claims: --output=<figures>/claims.md),
# and Katz & Reches' study: python -m keras_takd.smoothed.run --flagfile=flags/smoothed_kd_<mode>.cfg
# Every step resumes: rerunning after a kill redoes only unfinished models and attacks.
set -euo pipefail
cd "$(dirname "$0")"

mode=paper
dry_run=0
parallel=0
extra=()
executor_extra=()  # where evaluation's units run: keras_takd.takd.evaluate's flags only
for arg in "$@"; do
  case "$arg" in
    --quick) mode=quick ;;
    --cpu) mode=cpu ;;
    --paper) mode=paper ;;
    --dry_run | --dry-run) dry_run=1 ;;
    --parallel) parallel=1 ;;
    --executor=* | --ray_address=* | --cpus_per_unit=* | --gpus_per_unit=* | --max_retries=*)
      executor_extra+=("$arg") ;;
    -h | --help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --*) extra+=("$arg") ;;
    *) echo "reproduce.sh: error: unexpected argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

case "$mode" in
  paper) experiments=(mnist_takd cifar10_takd mnist_multistep cifar10_multistep)
         figures=figures/paper ;;
  cpu)   experiments=(mnist_cpu mnist_multistep_cpu); figures=figures/cpu ;;
  quick) experiments=(smoke); figures=runs/smoke/figures ;;
esac

PYTHON="${PYTHON:-python}"

run() {  # prints the command (quoted for a shell where needed), then runs it unless --dry_run
  local arg line="+"
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./=,:+@%-]+$ ]]; then line+=" $arg"
    else line+=" '${arg//\'/\'\\\'\'}'"; fi
  done
  echo "$line"
  if [[ "$dry_run" == 0 ]]; then "$@"; fi
}

# The last --output_dir of a flagfile, following nested --flagfile lines, or of the extras.
output_dir_of() {
  local file="$1" line dir=""
  while IFS= read -r line; do
    case "$line" in
      --flagfile=*) local nested; nested=$(output_dir_of "${line#--flagfile=}")
                    [[ -n "$nested" ]] && dir="$nested" ;;
      --output_dir=*) dir="${line#--output_dir=}" ;;
    esac
  done < "$file"
  for arg in "${extra[@]+"${extra[@]}"}"; do
    [[ "$arg" == --output_dir=* ]] && dir="${arg#--output_dir=}"
  done
  echo "$dir"
}

shared_extra=()  # the extra arguments evaluation shares with training (keras_takd.takd.run_flags)
for arg in "${extra[@]+"${extra[@]}"}"; do
  case "$arg" in --data_dir=* | --output_dir=*) shared_extra+=("$arg") ;; esac
done

experiment() {  # trains and evaluates one experiment
  run "$PYTHON" -m keras_takd.main --flagfile="flags/$1.cfg" "${extra[@]+"${extra[@]}"}"
  run "$PYTHON" -m keras_takd.takd.evaluate --flagfile="flags/${1}_eval.cfg" \
    "${shared_extra[@]+"${shared_extra[@]}"}" "${executor_extra[@]+"${executor_extra[@]}"}"
}

results=()
start=$SECONDS
for exp in "${experiments[@]}"; do
  for file in "flags/$exp.cfg" "flags/${exp}_eval.cfg"; do
    [[ -f "$file" ]] || { echo "reproduce.sh: error: $file not found" >&2; exit 1; }
  done
  results+=("$(output_dir_of "flags/${exp}_eval.cfg")/results.csv")
done
if [[ "$parallel" == 1 && "$dry_run" == 0 ]]; then
  pids=()
  for exp in "${experiments[@]}"; do experiment "$exp" & pids+=($!); done
  failed=0
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      echo "reproduce.sh: error: experiment ${experiments[$i]} failed (see its output above)" >&2
      failed=1
    fi
  done
  [[ "$failed" == 0 ]] || exit 1
else
  for exp in "${experiments[@]}"; do experiment "$exp"; done
fi
joined=$(IFS=,; echo "${results[*]}")
caption="./reproduce.sh --$mode: ${experiments[*]} (settings: flags/<experiment>*.cfg)"
run "$PYTHON" -m keras_takd.takd.figures --results="$joined" --output_dir="$figures" \
  --caption="$caption"
run "$PYTHON" -m keras_takd.takd.claims --results="$joined" --output="$figures/claims.md" \
  --caption="$caption"
# Katz & Reches' smoothed-teacher study (issue 5) has its own entry point, one flagfile per
# mode; of the extra arguments it takes only --data_dir.
smoothed_extra=()
for arg in "${extra[@]+"${extra[@]}"}"; do
  [[ "$arg" == --data_dir=* ]] && smoothed_extra+=("$arg")
done
run "$PYTHON" -m keras_takd.smoothed.run --flagfile="flags/smoothed_kd_$mode.cfg" \
  "${smoothed_extra[@]+"${smoothed_extra[@]}"}"
if [[ "$dry_run" == 1 ]]; then
  echo "reproduce.sh --$mode: dry run, nothing was run; results would be ${results[*]}; figures $figures"
else
  echo "reproduce.sh --$mode: done in $((SECONDS - start)) s; results ${results[*]}; figures $figures"
fi
