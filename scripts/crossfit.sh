#!/usr/bin/env bash
# The committed cross-fitted results: every shipped recipe, 5 folds by prompt x seed 42 (45 trainings;
# 7.0 hours in float32 on the 2-core AVX2 EPYC, results/crossfit_float32.log). Resumable: finished (seed, fold) runs are skipped, so rerun it after
# an interruption. Extra arguments go to every `prefopt run` (e.g. --seeds 1,2 for more seeds).
#
#   scripts/crossfit.sh [--results DIR] [RECIPE ...] [-- EXTRA]
#
# Paths are taken from where it is started (no RECIPE: recipes/*.yaml there), as run_all.sh's.
#
# No validation split (nothing is chosen in these runs, so 80% of the prompts train, as with the single
# split) and no generation test (its 300 prompts do not depend on the folds; the single-split runs take it).
set -u
args=()
while (($#)) && [[ $1 != -- ]]; do args+=("$1"); shift; done
(($#)) && shift
exec "$(dirname "$0")/run_all.sh" ${args[@]+"${args[@]}"} -- --seeds 42 --folds 5 --set data.validation_fraction=0 \
    --set eval.verifier=null "$@"
