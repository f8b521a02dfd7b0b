#!/usr/bin/env bash
# Run every recipe, keep going past a failing one, print a pass/fail list, rebuild the comparison.
#
#   scripts/run_all.sh                                   # every recipes/*.yaml (run from the repository root)
#   scripts/run_all.sh recipes/dpo.yaml recipes/orpo.yaml
#   scripts/run_all.sh --results /tmp/res -- --set train.max_steps=2 --seeds 1,2
#
# Options: --force reruns finished runs (otherwise `prefopt run` skips a run already finished with the same
# resolved recipe); --results DIR (default: results). Everything after `--` goes to every `prefopt run`.
# Exit status: 0 when every recipe passed, 1 when any failed, 2 for a usage error, 130 when interrupted (then
# without the rebuild: the same command again resumes and rebuilds).
# The Python used is $PYTHON, else `python` on PATH (the activated virtual environment).

set -u

usage() { sed -n '2,12s/^# \{0,1\}//p' "$0"; }

python=${PYTHON:-python}
results=results
force=()
extra=()
recipes=()
while (($#)); do
    case $1 in
        --force) force=(--force) ;;
        --results)
            if (($# < 2)); then echo "run_all.sh: --results needs a directory" >&2; exit 2; fi
            results=$2
            shift ;;
        --results=*) results=${1#--results=} ;;
        -h | --help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        -*) echo "run_all.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) recipes+=("$1") ;;
    esac
    shift
done

if ((${#recipes[@]} == 0)); then
    shopt -s nullglob
    recipes=(recipes/*.yaml)
    shopt -u nullglob
    if ((${#recipes[@]} == 0)); then
        echo "run_all.sh: no recipes/*.yaml in $PWD; run it from the repository root or name recipe files" >&2
        exit 2
    fi
fi

passed=()
failed=()
stopped=()  # the recipe Ctrl-C stopped: not failed, the same command resumes it
interrupted=0
total=${#recipes[@]}
i=0
for recipe in "${recipes[@]}"; do
    i=$((i + 1))
    echo "=== [$i/$total] $recipe"
    start=$SECONDS
    # --no-compare: one rebuild at the end, not one per recipe (each costs minutes over a results folder that
    # already holds many runs, as this repository's does: 2 min 46 s for its 99 runs on a 2-core EPYC)
    "$python" -m prefopt run "$recipe" --results "$results" --no-compare ${force[@]+"${force[@]}"} ${extra[@]+"${extra[@]}"}
    rc=$?
    took="$((SECONDS - start)) s"  # wall time of the whole command: loading, training, evaluation
    if ((rc == 0)); then
        passed+=("$recipe ($took)")
    elif ((rc == 130)); then  # Ctrl-C: stop here rather than start the next recipe
        stopped+=("$recipe (interrupted, $took)")
        interrupted=1
        break
    else
        failed+=("$recipe (exit $rc, $took)")
    fi
done

echo
counts="${#passed[@]} passed, ${#failed[@]} failed"
if ((interrupted)); then counts+=", 1 interrupted"; fi
echo "=== run_all: $counts, $((total - ${#passed[@]} - ${#failed[@]} - ${#stopped[@]})) not run"
for r in ${passed[@]+"${passed[@]}"}; do echo "PASS $r"; done
for r in ${failed[@]+"${failed[@]}"}; do echo "FAIL $r"; done
for r in ${stopped[@]+"${stopped[@]}"}; do echo "STOP $r"; done
for r in "${recipes[@]:$i}"; do echo "SKIP $r (interrupted)"; done

echo
if ((interrupted)); then  # Ctrl-C means stop: not minutes of rebuilding; the rerun rebuilds at its end
    echo "run_all.sh: interrupted; run the same command again to resume (finished runs are skipped) and rebuild the comparison" >&2
    exit 130
fi
echo "=== rebuilding the comparison: $python -m prefopt compare $results"
if [[ -d "$results" ]]; then
    "$python" -m prefopt compare "$results"
    compare_rc=$?
else  # no run got as far as making it; prefopt compare refuses a missing folder (a mistyped one, by hand)
    echo "(no $results folder: no run finished, nothing to compare)"
    compare_rc=0
fi
if ((compare_rc == 130)); then
    echo "run_all.sh: the comparison rebuild was interrupted; \`$python -m prefopt compare $results\` (or this command) rebuilds it" >&2
    exit 130
elif ((compare_rc != 0)); then
    echo "run_all.sh: the comparison rebuild failed (exit $compare_rc)" >&2
fi

if ((${#failed[@]} > 0 || compare_rc != 0)); then exit 1; fi
exit 0
