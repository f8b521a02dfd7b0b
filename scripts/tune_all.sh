#!/usr/bin/env bash
# The tuned line-up: every recipe tuned with the same trial budget on the validation split (`prefopt tune`),
# then each tuned recipe (results/tuned/<name>.yaml) trained with seeds and scored on the test split, beside
# the untuned runs in results/summary.md.
#
#   scripts/tune_all.sh                                  # every recipes/*.yaml, 4 trials, seeds 1,2,42
#   scripts/tune_all.sh --trials 8 --seeds 42 recipes/dpo.yaml recipes/orpo.yaml
#   scripts/tune_all.sh --results /tmp/res -- --set train.max_steps=2   # after `--`: to every tune and run
#   (a --set reaches the runs through the tuned recipe, which holds it: `--set name=x` tunes x into x_tuned)
#
# Resumable: finished trials and runs are skipped, so rerun the same command after an interruption.
# Cost on a 2-core CPU: trials x recipes trainings (each about a run's training time plus validation
# scoring) and then seeds x recipes ordinary runs. The Python used is $PYTHON, else `python` on PATH.
# Paths (recipes, --results, the default recipes/*.yaml) are taken from where it is started, as run_all.sh's.

set -u
here=$(dirname "$0")  # not a cd: the caller's relative paths stay relative to the caller
usage() { sed -n '2,14s/^# \{0,1\}//p' "$0"; }

python=${PYTHON:-python}
trials=4
seeds=1,2,42
results=results
extra=()
recipes=()
while (($#)); do
    case $1 in
        --trials | --seeds | --results)
            if (($# < 2)); then echo "tune_all.sh: $1 needs a value" >&2; exit 2; fi
            declare "${1#--}=$2"
            shift ;;
        --trials=* | --seeds=* | --results=*) declare "${1#--}" ;;  # the one-word form, as run_all.sh's --results=
        -h | --help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        -*) echo "tune_all.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) recipes+=("$1") ;;
    esac
    shift
done
if ((${#recipes[@]} == 0)); then
    shopt -s nullglob
    recipes=(recipes/*.yaml)
    shopt -u nullglob
    if ((${#recipes[@]} == 0)); then
        echo "tune_all.sh: no recipes/*.yaml in $PWD; run it from the repository root or name recipe files" >&2
        exit 2
    fi
fi

# --seeds reaches only the runs, after every trial: a bad value was refused by each run once the tuning was
# done. Checked here by prefopt's own reading of it (`prefopt run --seeds`), so both accept the same values
"$python" -c '
import sys
from prefopt.cli import parse_seeds
from prefopt.errors import UserError
try:
    parse_seeds(sys.argv[1])
except UserError as e:
    sys.exit(f"tune_all.sh: {e}")
' "$seeds" || exit 2

# The runs get the options after `--` but not the --set values: the tuned recipe already holds them, and given
# again a `--set name=x` renamed x_tuned back to x, so its runs joined the untuned x's in runs/x.
# --trials and --results are this script's own: after `--`, `prefopt tune` took them (8 trials under a banner
# saying 4; tuned recipes written where the runs did not look for them) and every run then refused them or
# missed its recipe, after all the tuning; refused here, before it
sets=()
run_extra=()
for ((k = 0; k < ${#extra[@]}; k++)); do
    case ${extra[k]} in
        --set) sets+=("${extra[k + 1]-}"); k=$((k + 1)) ;;
        --set=*) sets+=("${extra[k]#--set=}") ;;
        --trials | --trials=* | --results | --results=*)
            echo "tune_all.sh: ${extra[k]%%=*} after -- is tune_all.sh's own option: give it before -- (see --help)" >&2
            exit 2 ;;
        *) run_extra+=("${extra[k]}") ;;
    esac
done

echo "=== tuning ${#recipes[@]} recipes, $trials trials each"
"$python" -m prefopt tune "${recipes[@]}" --trials "$trials" --results "$results" ${extra[@]+"${extra[@]}"} || exit $?
# each tuned recipe is results/tuned/<name>.yaml, the name as `prefopt tune` resolved it: with the --set
# values after `--` (a `--set name=x` renames it), and a broken file said in one line, not a traceback
tuned=()
for recipe in "${recipes[@]}"; do
    name=$("$python" -c '
import sys
from prefopt.errors import UserError
from prefopt.recipe import load_recipe
try:
    print(load_recipe(sys.argv[1], sys.argv[2:]).name)
except UserError as e:
    sys.exit("\n".join(f"prefopt: error: {line}" for line in str(e).splitlines()))
' "$recipe" ${sets[@]+"${sets[@]}"}) || exit 2
    tuned+=("$results/tuned/$name.yaml")
done
echo "=== training the tuned recipes, seeds $seeds"
exec "$here/run_all.sh" --results "$results" "${tuned[@]}" -- --seeds "$seeds" ${run_extra[@]+"${run_extra[@]}"}
