#!/usr/bin/env bash
# Reproduces Mandal & Guo, "Improving Defensive Distillation using Teacher Assistant"
# (sections V and VI) from the flagfiles in flags/: each experiment is one study (train every
# chain, evaluate every model, write its tables, claims and figures), then the figures and
# claims of all experiments together are redrawn from their results CSVs.
#
#   ./reproduce.sh                 paper scale (GPU-sized): mnist_takd cifar10_takd
#                                  mnist_multistep cifar10_multistep      -> figures/paper/
#   ./reproduce.sh --cpu           what a 2-core CPU finishes in about 2.5 hours: mnist_cpu
#                                  mnist_multistep_cpu                    -> figures/cpu/
#                                  then smoothed_kd_cpu (about 35 minutes more)
#   ./reproduce.sh --quick         the same pipeline at toy size in minutes: smoke
#                                                                         -> runs/smoke/figures/
#                                  then smoothed_kd_quick (about a minute more)
#   ./reproduce.sh --quick --data_dir=../shared/data    extra arguments go to every study
#                                  (keras_takd.takd.study takes training's and evaluation's
#                                  flags); --data_dir also to Katz & Reches' study
#   ./reproduce.sh --quick --dry_run    print the commands instead of running them
#   ./reproduce.sh --quick --executor=ray   the chains and the evaluation units as Ray tasks
#                                  on a local Ray (pip install -e ".[ray]"); with
#                                  --ray_address=<head>:6379 on a cluster; --cpus_per_unit,
#                                  --gpus_per_unit and --max_retries size and retry the tasks
#                                  (README: Running a whole study). This replaces the former
#                                  --parallel (experiments side by side): on Ray an
#                                  experiment's chains and units run side by side, each as
#                                  soon as a worker is free, one experiment after another.
#
# Per experiment <exp>:
#   python -m keras_takd.takd.study --flagfile=flags/<exp>.cfg --flagfile=flags/<exp>_eval.cfg
#       [extra arguments] [executor flags]         -> <output_dir>/results.csv, figures/
# then once: python -m keras_takd.takd.figures --results=<each run's results.csv>
# --output_dir=<figures>, python -m keras_takd.takd.claims (our numbers beside the papers'
# claims: --output=<figures>/claims.md),
# and Katz & Reches' study: python -m keras_takd.smoothed.run --flagfile=flags/smoothed_kd_<mode>.cfg
# Every step resumes: rerunning after a kill redoes only unfinished chains and units.
#
# keras_takd.main, keras_takd.takd.evaluate --num_shards/--shard_index and keras_takd.takd.merge
# remain for one case the study on Ray does not serve: machines that cannot join one Ray
# cluster (no network between them, or a batch scheduler that hands out separate jobs) but
# share the run folder; each then evaluates its shard and one merges them (docs/usage.md).
set -euo pipefail
cd "$(dirname "$0")"

mode=paper
dry_run=0
extra=()  # every study's
for arg in "$@"; do
  case "$arg" in
    --quick) mode=quick ;;
    --cpu) mode=cpu ;;
    --paper) mode=paper ;;
    --dry_run | --dry-run) dry_run=1 ;;
    --parallel) echo "reproduce.sh: error: --parallel is gone: use --executor=ray, which runs" \
                  "an experiment's chains and units side by side" >&2; exit 2 ;;
    -h | --help) sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

results=()
start=$SECONDS
for exp in "${experiments[@]}"; do
  for file in "flags/$exp.cfg" "flags/${exp}_eval.cfg"; do
    [[ -f "$file" ]] || { echo "reproduce.sh: error: $file not found" >&2; exit 1; }
  done
  results+=("$(output_dir_of "flags/${exp}_eval.cfg")/results.csv")
done
for exp in "${experiments[@]}"; do  # one study each: its chains, its units, its report
  run "$PYTHON" -m keras_takd.takd.study --flagfile="flags/$exp.cfg" \
    --flagfile="flags/${exp}_eval.cfg" "${extra[@]+"${extra[@]}"}"
done
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
