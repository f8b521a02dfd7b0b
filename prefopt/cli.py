"""Command line: run, tune, data, list, compare.

Exit status: 0 success, 2 user error (one line per problem on stderr, no traceback), 1 internal failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from .errors import UserError, did_you_mean


class OneLineParser(argparse.ArgumentParser):
    """A bad option is one line, as every other bad input: argparse printed its usage (five lines for `tune`)
    above the error, and named the option as 'argument --engine'. The scripts in scripts/ use it too, with
    their own file name as `prog` (`bench_eval.py`: "bench_eval: error: ..." as their other errors)."""

    def error(self, message):
        known = re.match(r"argument (\S+?): (.*)", message, flags=re.S)
        what = f"{known[1]}: {known[2]}" if known else message
        name = self.prog.split()[0].removesuffix(".py")
        self.exit(2, f"{name}: error: {' '.join(what.split())} (see {self.prog} --help)\n")


def at_least(low: int):
    """An argparse type: a whole number of at least `low`, refused while the options are parsed, before any
    data is read or a model loaded (`--max-concurrent 0` was refused only after every trial's TRL config
    was built, a script's `--prompts 0` ended in a traceback after loading the model)."""

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value}: must be at least {low}")
        return value

    return whole_number


def readable_file(hint: str, base: Path | None = None):
    """An argparse type: the path of a file that can be read, refused while the options are parsed, before
    anything is written or a model loaded (a missing recipe ended in a traceback, in a child's error under
    the script's own, or, in bench_ray.py, after the previous results were deleted). `hint` says what to give;
    a relative path is read from `base` when given (a script whose runs start in the repository)."""

    def readable(text: str) -> str:
        try:
            with open(Path(base or ".") / text, "rb"):
                pass
        except FileNotFoundError:
            raise argparse.ArgumentTypeError(f"{text}: no such file; give {hint}") from None
        except OSError as e:
            raise argparse.ArgumentTypeError(f"{text}: cannot be read ({e.strerror}); give {hint}") from None
        return text

    return readable


def names_from(choices):
    """An argparse type: comma-separated names, each one of `choices`; the text is kept as given. An unknown
    one was found only after the first names' runs (bench_overhead.py --methods: a KeyError traceback)."""

    def names(text: str) -> str:
        for name in text.split(","):
            if name not in choices:
                raise argparse.ArgumentTypeError(f"unknown name '{name}' in {text!r}; {did_you_mean(name, choices)}")
        return text

    return names


def model_name(text: str) -> str:
    """An argparse type: an alias, a model folder or (online) a hub id, as model.name takes it; the text is kept as
    given. An unknown one was found only when the model was loaded (make_dataset.py, rejudge_strict.py: a
    UserError traceback, after torch and transformers were imported)."""
    from .models import check_model

    try:
        check_model(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(e.message) from None
    return text


def seed_list(text: str) -> list[int]:
    """An argparse type: comma-separated seeds, as `prefopt run --seeds` reads them (parse_seeds)."""
    try:
        return parse_seeds(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e.message}") from None


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="prefopt", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train, evaluate and write results for a recipe")
    run.add_argument("recipe", help="a recipe file, e.g. recipes/kto_mixed.yaml or results/tuned/dpo.yaml")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a recipe field, e.g. --set train.max_steps=20 (repeatable)")
    run.add_argument("--results", default="results", help="results directory (default: results)")
    run.add_argument("--seeds", help="comma-separated seeds, one training each (overrides the recipe's)")
    run.add_argument("--folds", type=int, metavar="K", help="cross-fitting: K folds by prompt, one training each, "
                     "every prompt scored by the model that did not train on it (= --set data.folds=K)")
    run.add_argument("--force", action="store_true", help="rerun a run that already finished")
    run.add_argument("--no-compare", action="store_true", help="leave the comparison tables and plots as they are "
                     "(for scripts that run many recipes and run `prefopt compare` once at the end)")
    _engine_options(run)
    run.add_argument("--verbose", action="store_true", help="show the libraries' own progress bars, notices and "
                     "deprecation warnings (quieted by default)")

    tune = sub.add_parser("tune", help="the same number of trials per recipe over its search space, scored on the "
                          "validation split; writes <--results>/tuned/<name>.yaml (default results/)")
    tune.add_argument("recipe", nargs="+", help="recipe files, each tuned with the same number of trials")
    tune.add_argument("--trials", type=int, metavar="N", help="trials per recipe (default: the recipe's tune.trials)")
    tune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a field of every recipe, e.g. --set train.max_steps=20 (repeatable)")
    tune.add_argument("--results", default="results", help="results directory (default: results)")
    tune.add_argument("--force", action="store_true", help="train every trial again, finished ones too (as run "
                      "--force: for data changed since they trained)")
    tune.add_argument("--verbose", action="store_true", help="show the libraries' own progress bars, notices and "
                      "deprecation warnings (quieted by default)")
    _engine_options(tune)

    data = sub.add_parser("data", help="prepare the data only and print its report (no model is loaded)")
    data.add_argument("recipe", help="a recipe file, e.g. recipes/kto_mixed.yaml")
    data.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a recipe field, as for run (repeatable)")
    data.add_argument("--json", action="store_true", help="print the report as JSON")

    sub.add_parser("list", help="registered methods, data strategies, pairings, verifiers, model aliases and "
                   "backends, and the recipes in ./recipes")

    cmp_ = sub.add_parser("compare", help="rebuild comparison tables and plots from finished runs")
    cmp_.add_argument("results", nargs="?", default="results", help="the folder `prefopt run --results` wrote "
                      "(default: results)")
    return p


def _engine_options(p) -> None:
    p.add_argument("--engine", default="auto", choices=("auto", "local", "ray"),
                   help="how a batch of runs is run: ray (Ray Tune trials), local (one by one in this process); auto: "
                   "ray with --address (or $RAY_ADDRESS), or when installed and more than one run is left to train "
                   "(finished ones are skipped); local under torchrun/accelerate")
    p.add_argument("--address", help="an existing Ray cluster (default: $RAY_ADDRESS; none: Ray embedded here)")
    p.add_argument("--storage", help="with --address: a path every Ray node sees, for Ray's trial state")
    p.add_argument("--max-concurrent", type=at_least(1), metavar="N", help="Ray trials at once (default: one per GPU, "
                   "else one: a training uses every CPU core); --engine local runs one at a time")


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError("--seeds", text, "expected comma-separated integers, e.g. --seeds 1,2,3") from None
    if not seeds:
        raise UserError("--seeds", text, "expected at least one seed, e.g. --seeds 1,2,3")
    return seeds


def _list() -> None:
    from .data import PAIRINGS, STRATEGIES
    from .methods import methods
    from .models import BACKENDS, MODEL_ALIASES
    from .verifiers import VERIFIERS

    def section(title, items):
        print(title)
        for name, text in items:
            print(f"  {name:<24} {text}")
        print()

    section("methods:", [(n, f"[{s.form}] {s.description}") for n, s in sorted(methods().items())])
    section("data strategies (data.strategy):", [(n, f"[{', '.join(v[1])}] {v[2]}") for n, v in STRATEGIES.items()])
    section("pairings (data.pairing):", PAIRINGS.items())
    section("verifiers (eval.verifier):", [(n, v.description) for n, v in VERIFIERS.items()])
    section("model aliases (model.name):", [(n, a.description) for n, a in MODEL_ALIASES.items()])
    section("backends (model.backend):", BACKENDS.items())
    shipped = sorted(Path("recipes").glob("*.yaml"))
    if shipped:
        section("recipes (./recipes):", [(p.stem, _recipe_line(p)) for p in shipped])


def _recipe_line(path: Path) -> str:
    """`[method] first sentence of the recipe's opening comment`, or `[?] why it does not load` (the first
    line `prefopt data` would print for it): a bare `[?]` once left the reader to guess."""
    from .errors import UserErrors
    from .recipe import load_recipe

    try:
        method = load_recipe(str(path)).method  # yaml and the registries only: no torch
    except UserError as e:
        first = e.errors[0] if isinstance(e, UserErrors) else e
        return f"[?] does not load: {': '.join(str(p) for p in (first.field, first.message) if p)}"
    return f"[{method}] {_first_sentence(path.read_text(encoding='utf-8'))}"


def _first_sentence(text: str) -> str:
    """The opening comment's first paragraph up to its first full stop: its first line alone was often cut
    mid-sentence, and what was left read as a different claim."""
    paragraph = []
    for line in text.splitlines():
        words = line.lstrip("#").strip()
        if not line.startswith("#") or not words and paragraph:
            break
        if words:
            paragraph.append(words)
    joined = " ".join(paragraph)
    end = re.search(r"[.!?](?=\s+[A-Z(\"']|$)", joined)  # not "e.g. the" nor "al., 2024"
    return joined[:end.end()] if end else joined


def dispatch(ns) -> None:
    if getattr(ns, "results", None) == "":  # `--results "$OUT"` with OUT unset: Path("") is the current folder,
        # which then received runs/, cache/ and the tables, spread over wherever the command was started
        field = "results" if ns.command == "compare" else "--results"
        raise UserError(None, field, "is empty (an unset variable?); give a folder, e.g. results")
    if ns.command == "list":
        _list()
    elif ns.command == "data":
        from .data.report import format_report
        from .recipe import load_recipe
        from .preflight import check_data

        prepared = check_data(load_recipe(ns.recipe, ns.set))
        from .console import warn_data

        warn_data(prepared.report)
        print(json.dumps(prepared.report, indent=2) if ns.json else format_report(prepared.report))
    elif ns.command == "run":
        from .console import quiet_libraries
        from .recipe import load_recipe

        quiet_libraries(ns.verbose)
        recipe = load_recipe(ns.recipe, ns.set + ([f"data.folds={ns.folds}"] if ns.folds is not None else []))
        seeds = parse_seeds(ns.seeds)
        from .results import check_results_dir
        from .runner import run_recipe

        check_results_dir(Path(ns.results))
        check_results_dir(Path(ns.results) / "runs" / recipe.name)  # a file in the run's way: said before training

        run_recipe(recipe, results=ns.results, force=ns.force, seeds=seeds, engine=ns.engine, address=ns.address,
                   storage=ns.storage, max_concurrent=ns.max_concurrent, compare=not ns.no_compare)
    elif ns.command == "tune":
        from .console import quiet_libraries
        from .recipe import load_recipe

        quiet_libraries(ns.verbose)
        if ns.trials is not None and ns.trials < 1:
            raise UserError("--trials", str(ns.trials), "must be at least 1")
        recipes = [load_recipe(path, ns.set) for path in ns.recipe]  # every recipe checked before any trial
        from .results import check_results_dir

        check_results_dir(Path(ns.results))
        from .tuning import tune_recipes

        for path in tune_recipes(recipes, results=ns.results, trials=ns.trials, engine=ns.engine, address=ns.address,
                                 storage=ns.storage, max_concurrent=ns.max_concurrent, sets=ns.set, force=ns.force):
            print(f"prefopt: tuned recipe {path} (trials in {Path(ns.results) / 'tuning'})")
    elif ns.command == "compare":
        from .compare import own_files, rebuild
        from .results import finished_metrics, path_kind

        results = Path(ns.results)
        kind = path_kind(results)  # one stat: a `prefopt run --results` probing this folder makes and removes it
        if kind != "dir":  # a mistyped folder once compared nothing, silently, with exit status 0
            what = "is a file, not a folder" if kind == "other" else "no such folder"
            raise UserError(str(results), "results", f"{what}; give the folder that `prefopt run --results` wrote "
                            "(default: results)")
        old = own_files(results)
        written = rebuild(results)
        for path in written:
            print(path)
        if not written:  # (stderr: stdout lists the files written, for scripts)
            aside = len(finished_metrics(results, "cache/replaced"))
            print(f"prefopt: no finished run in {results / 'runs'} (a run is finished once its metrics.json is "
                  "written); nothing to compare" +
                  (f"; removed the {len(old)} tables and plots of runs no longer there" if old else "") +
                  (f"; {aside} finished run{'s' * (aside != 1)} set aside by an unfinished `prefopt run --force` "
                   f"{'wait' if aside != 1 else 'waits'} in {results / 'cache' / 'replaced'} until the same "
                   "command finishes the rerun" if aside else ""), file=sys.stderr)


def main(argv=None) -> int:
    if argv is None:  # the real command line (not a test or script calling in): see prefopt/allocator.py
        from .allocator import reexec_with_heap_allocator

        reexec_with_heap_allocator()
        code = _main(None)
        if int(os.environ.get("WORLD_SIZE", 1)) > 1:
            _exit_without_finalization(code)
        return code
    return _main(argv)


def _exit_without_finalization(code: int) -> None:
    """End a launcher's worker (torchrun, accelerate launch) once everything is written and flushed, without
    the interpreter's finalization: there a native thread (gloo's, autograd's) that still wants the GIL is
    killed by CPython inside a noexcept destructor, and the process aborts ('terminate called without an
    active exception', exit -6) after a run that finished: the launcher then reports the whole run failed.
    Every result is already on disk (written atomically); only streams and log handlers need flushing."""
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _main(argv) -> int:
    ns = _parser().parse_args(argv)
    try:
        dispatch(ns)
        sys.stdout.flush()  # here, so that a reader that left early is met below and not at interpreter exit
    except BrokenPipeError:  # `prefopt list | head`: the reader has what it wanted; nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except UserError as e:
        for line in str(e).splitlines():
            print(f"prefopt: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        from .batch import Interrupted

        if isinstance(e, Interrupted):  # a batch: what finished is kept, and the same command skips it
            what = "trials" if ns.command == "tune" else "runs"
            again = (f"the same command without --force skips the finished {what} (with it, it trains them all "
                     "again)" if getattr(e, "force", False) else f"the same command skips the finished {what}")
            print(f"prefopt: interrupted; {e.finished} of {e.total} {what} finished (kept): {again} and resumes the "
                  "others from their last checkpoint", file=sys.stderr)
            return 130
        again = {"tune": "; `prefopt tune` on the same recipes resumes the trials",
                 "run": "; `prefopt run` on the same recipe resumes from the last checkpoint",
                 "compare": "; `prefopt compare` again rebuilds the tables and plots"}.get(ns.command, "")
        print(f"prefopt: interrupted{again}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
