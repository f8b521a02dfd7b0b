"""recipe -> data -> model -> TRL trainer -> held-out metrics -> results/.

The runner is method-agnostic: everything method-specific comes from the method's spec (TRL classes,
data form, defaults, fixed values, weight fields). It is also the only writer of run directories, and
under torchrun / accelerate only the main process writes.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import resource
import shutil
import time
from pathlib import Path

from .console import closing_block, data_line, phase, say, warn_data
from .evaluation import evaluate, precision_used
from .errors import UserError
from .methods import get_method
from .preflight import check_prompt_lengths, checked_data, prepare_data, world
from .recipe import Recipe
from .recipe_checks import check_train_fields
from .trainer_config import build_config, check_trainer_runs_here, lora_kwargs, score_completion_tokens_only
from . import resume
from . import results as res


def check_run(recipe: Recipe) -> None:
    """check_data, and the TRL config a run of this recipe builds, built here (no model, nothing written):
    for a batch on Ray, where a refused setting (warmup_steps: -1) came back only once every trial had
    started and failed on it."""
    spec = get_method(recipe.method, file=recipe.source)
    prepared, epochs = checked_data(recipe)
    config_class = spec.config_class()
    check_train_fields(recipe, config_class)
    build_config(recipe, spec, config_class, prepared.report, epochs, Path(recipe.name))  # (output_dir: unused)


def run_recipe(recipe: Recipe, *, results: str = "results", force: bool = False, seeds=None, engine: str = "auto",
               address: str | None = None, storage: str | None = None, max_concurrent: int | None = None,
               compare: bool = True) -> list[Path]:
    from .batch import run_jobs

    seeds = seeds or recipe.seeds or [recipe.seed]
    # folds are run like seeds: each (seed, fold) is one ordinary run, skipped when finished; a batch of
    # several goes to Ray when it is installed (prefopt.batch), one by one here otherwise
    jobs = [recipe.for_seed(s).for_fold(f) for s in seeds for f in recipe.folds()]
    runs = run_jobs(jobs, results=Path(results), engine=engine, address=address, storage=storage,
                    max_concurrent=max_concurrent, force=force)
    # rebuild only when some finished run is not in the tables yet (this call finished one, or an earlier
    # rebuild was stopped part-way): with every run skipped the tables are already current, and a rebuild over
    # dozens of runs costs minutes (run_all.sh over a clone); `compare=False` for a script that runs many
    # recipes and rebuilds once at its end
    from .compare import is_current

    if compare and world()[0] == 0 and not is_current(Path(results)):
        from .compare import rebuild

        written = rebuild(Path(results))
        if written:
            plots = sum(1 for p in written if p.parent.name == "plots")
            say(f"prefopt: comparison of every finished run: {Path(results) / 'summary.md'} (and summary.csv, "
                f"comparison.csv), {plots} plots in {Path(results) / 'plots'}")
    _close_process_group()
    return runs


def _close_process_group() -> None:
    """Under torchrun/accelerate: every process waits for the others, then the group is torn down before
    the interpreter exits (left to exit, gloo's threads could abort a process: 'terminate called without
    an active exception', seen about one 2-process run in four). Garbage is collected first: the trainer
    and its DDP wrapper sit in reference cycles, and freed only at interpreter exit they would release the
    group's last reference there (a CI run on 2026-12-01 still aborted so with the group destroyed; the
    CLI also ends such a process without finalization, see cli.main)."""
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def run_one(recipe: Recipe, *, results: Path, force: bool = False) -> Path:
    rank, world_size = world()
    main = rank == 0
    spec = get_method(recipe.method, file=recipe.source)
    run = res.run_dir(results, recipe.name, recipe.seed, recipe.fingerprint(), recipe.data.fold)
    # a finished run is skipped here, before anything heavy; under torchrun the main process decides that for
    # every rank (below, once the ranks can talk): a rank looking for itself could see the run before and after
    # another process finished it or set it aside, and a rank that skips leaves the others waiting for it
    if world_size == 1 and res.is_finished(run) and not force:
        return _already_finished(run, recipe, lambda: prepare_data(recipe, spec, world_size)[0].report, main)

    from .models import pick_backend, resolve_model

    backend = pick_backend(recipe.model.backend, file=recipe.source)
    model_dir = resolve_model(recipe.model.name, file=recipe.source)  # a bad name fails before anything is written
    if backend == "unsloth":
        importlib.import_module("unsloth")  # patches transformers/trl, so it must be imported before them

    config_class = spec.config_class()
    check_train_fields(recipe, config_class)
    prepared, epochs = prepare_data(recipe, spec, world_size)
    args = build_config(recipe, spec, config_class, prepared.report, epochs, run)
    check_prompt_lengths(recipe, prepared, getattr(args, "max_length", None),
                         model_dir if Path(model_dir).is_dir() else None)  # a hub id: TRL's check only
    if main:
        fold = "" if recipe.data.fold is None else f", fold {recipe.data.fold} of 0..{recipe.data.folds - 1}"
        say(f"prefopt: {recipe.name} ({recipe.method}), seed {recipe.seed}{fold} -> {run}")
        say(data_line(prepared.report, precision_used(recipe, args)))
        warn_data(prepared.report)
    check_trainer_runs_here(spec.trainer_class(), recipe.source)  # after the recipe's own errors, before any write
    score_completion_tokens_only()

    from .refcache import model_files as files_of

    model_files = files_of(recipe.model.name)  # None: a hub id not on disk (TRL loads it)
    # from here on this process writes the run: one process at a time (the main one holds the lock; a
    # launcher ends the other ranks when it fails), taken after the recipe's own checks so that a command
    # failing on them leaves nothing behind
    with res.hold(run) if main else contextlib.nullcontext():
        # finished (by the process that held it while this one prepared)? The main process answers for all
        if broadcast(res.is_finished(run) and not force if main else None):
            return _already_finished(run, recipe, lambda: prepared.report, main)
        return _write_run(recipe, spec, backend, args, prepared, run, main, force, model_files)


def _already_finished(run: Path, recipe: Recipe, report, main: bool) -> Path:
    """A finished run stands, unless its data changed since (`report`: a function giving this data's report)."""
    stored = resume.stored(run / "data_report.json")
    # runs from before a fingerprint was recorded are trusted on it; the generation test's prompts, from a
    # file of their own (eval.prompts), are not in the data's
    now = report() if stored.get("data_fingerprint") or stored.get("generation_test_fingerprint") else {}
    if stored.get("data_fingerprint"):
        resume.check_same_data(run, now, recipe.source, finished=True)
    if stored.get("generation_test_fingerprint") not in (None, now.get("generation_test_fingerprint")):
        raise UserError(recipe.source, "eval.prompts", f"{run} finished with another generation test (the prompts "
                        f"of {recipe.eval.prompts or recipe.data.path} or their verifier changed since); --force "
                        "trains and scores it again with this one, or use another --results folder to keep both")
    if main:
        res.drop_replaced(run)  # a retraining stopped between its metrics.json and this cleanup left the copy
        print(f"prefopt: {run} is already finished (same resolved recipe); --force reruns it")
    return run


def _write_run(recipe, spec, backend, args, prepared, run: Path, main: bool, force: bool, model_files) -> Path:
    world_size = world()[1]
    fresh = main and not run.exists()  # this command creates the run folder: a refusal before training removes it
    if not force and resume.started(run):
        resume.check_same_data(run, prepared.report, recipe.source, finished=False)
        resume.check_resumes_on_same_model(run, model_files, recipe)
        resume.check_resumes_in_same_precision(run, precision_used(recipe, args), recipe.source)
        resume.check_resumes_on_same_processes(run, world_size, backend, recipe.source)
    if main:
        if force and run.exists():
            res.set_aside(run)  # kept until the new training finishes (results/cache/replaced)
        res.clear_temporaries(run)  # an earlier attempt's, killed mid-write (this process holds the run's lock)
        res.write_yaml(run / "recipe.yaml", recipe.to_dict())
        res.write_json(run / "data_report.json", prepared.report)
        env = res.environment(recipe.seed, world_size, backend, precision_used(recipe, args))
        env["model_files"] = model_files
        if not force and resume.started(run):  # a resumed run: what its earlier attempts trained under stays on record
            before = resume.stored(run / "env.json")
            env["earlier_attempts"] = before.pop("earlier_attempts", []) + ([before] if before else [])
        res.write_json(run / "env.json", env)

    try:
        return _train_and_evaluate(recipe, spec, backend, args, prepared, run, main)
    except Exception as e:  # out of memory is the user's setting to lower, not a crash
        if fresh and (isinstance(e, UserError) or _is_oom(e)):
            _drop_untrained(run)
        if _is_oom(e):
            raise UserError(recipe.source, "train.per_device_train_batch_size",
                            "out of memory; lower train.per_device_train_batch_size (raise gradient_accumulation_steps "
                            "to keep the effective batch), train.max_length or eval.batch_size") from None
        raise


WRITTEN_FIRST = ("recipe.yaml", "data_report.json", "env.json")  # what _write_run writes before loading the model


def _drop_untrained(run: Path) -> None:
    """Remove a run folder that holds only what was written before the model loaded: bad input found then (a
    model folder that does not load, prompts TRL finds too long) left a run that never trained, which every
    later table skipped without a word. Anything more (a checkpoint, an adapter) is kept for the rerun."""
    if run.is_dir() and all(p.name in WRITTEN_FIRST or (p.is_dir() and not any(p.iterdir())) for p in run.iterdir()):
        shutil.rmtree(run, ignore_errors=True)
        with contextlib.suppress(OSError):
            run.parent.rmdir()  # the recipe's folder, when this was its only run


def _train_and_evaluate(recipe, spec, backend, args, prepared, run: Path, main: bool) -> Path:
    import torch
    from datasets import Dataset
    from .models import load_model, load_trained

    if torch.cuda.is_available():  # peak_memory_mb is this run's: several runs can share a process (--engine local)
        torch.cuda.reset_peak_memory_stats()
    # an earlier attempt finished training and saved its adapter; evaluation failed. Asked of the main process
    # after its `--force` set the old run aside: another rank asking for itself could still find the old
    # trained.json, skip training and leave the main process alone in it (a crash, seen under torchrun)
    if broadcast(res.is_trained(run) if main else None):
        if main:
            say(f"prefopt: training finished in an earlier attempt ({run / 'trained.json'}); evaluating its saved model")
            shutil.rmtree(args.output_dir, ignore_errors=True)  # left when that attempt stopped before removing them
            with phase(f"loading {recipe.model.name} with the trained {run / 'adapter'}"):
                model, tok = load_trained(recipe.model.name, run / "adapter", dtype=recipe.model.dtype,
                                          file=recipe.source)
            _evaluate_and_write(recipe, model, tok, prepared, args, run, res.read_trained(run), backend)
        return run

    lora = lora_kwargs(recipe)
    if backend == "unsloth" and lora and lora["target_modules"] == "all-linear":
        lora["target_modules"] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    with phase(f"loading {recipe.model.name}"):
        model, tok = load_model(recipe.model.name, dtype=recipe.model.dtype, backend=backend, file=recipe.source,
                                max_length=getattr(args, "max_length", None) or 2048,
                                lora=lora if backend == "unsloth" else None, seed=recipe.seed)
    peft_config = None
    if lora and backend != "unsloth":
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", **lora)

    from .data import FORMS

    columns = list(FORMS[spec.form])
    train = Dataset.from_list(prepared.train[columns].to_dict("records"))
    with phase(f"preparing {spec.trainer.partition(':')[2]} (tokenizing {len(train)} rows)"):
        trainer = spec.trainer_class()(model=model, args=args, train_dataset=train, processing_class=tok,
                                       peft_config=peft_config)
    _own_progress(trainer)
    if spec.ordered and len(trainer.train_dataset) != len(train):
        # TRL drops rows whose prompt alone fills max_length; that would shift every batch of the order.
        raise UserError(recipe.source, "train.max_length", f"{len(train) - len(trainer.train_dataset)} prompts are "
                        f"at least max_length={args.max_length} tokens; raise train.max_length")

    selector = _best_checkpoint(recipe, prepared, tok, args, run, main) if recipe.eval.select == "best" else None
    if selector is not None:
        trainer.add_callback(selector)
    last = resume.last_complete_checkpoint(Path(args.output_dir)) if main else None
    last = broadcast(last)
    # what each micro-batch really trained on, on every process, earlier attempts' batches included
    audit = LabelAudit(trainer, Path(args.output_dir), last)
    if last and main:
        print(f"prefopt: resuming {run} from {last}")
    start = time.perf_counter()
    earlier = resume.seconds_before(last) if last else 0.0
    if main:
        trainer.add_callback(resume.clock_callback(Path(args.output_dir), start, earlier))
    if last and 0 < args.max_steps <= resume.step_of(last):
        # stopped after its last checkpoint, before trained.json: the training is done, and resuming would
        # train a step past max_steps (the trainer's loop checks the budget only after a step)
        from transformers import TrainerState

        trainer._load_from_checkpoint(last)
        trainer.state = TrainerState.load_from_json(str(Path(last) / "trainer_state.json"))
        if selector is not None and trainer.state.global_step not in {r["step"] for r in selector.log}:
            selector.score(trainer.state.global_step, trainer.model)  # stopped before its last scoring
        train_seconds = earlier
    else:
        with phase(f"training {args.max_steps if args.max_steps > 0 else ''} steps".replace("  ", " ")) as p:
            trainer.train(resume_from_checkpoint=last)
            train_seconds = earlier + time.perf_counter() - start  # NaN: an earlier attempt's time is unknown
            p["note"] = f"{train_seconds / max(trainer.state.global_step, 1):.2f} s/step"
    from accelerate.utils import gather_object

    batches = gather_object([(int(os.environ.get("RANK", 0)), i, *counts) for i, counts in enumerate(audit.seen)])

    if main:
        import pandas as pd

        res.write_atomic(run / "train_log.csv", pd.DataFrame(trainer.state.log_history).to_csv(index=False))
        if batches:
            res.write_atomic(run / "batch_labels.csv", pd.DataFrame(
                batches, columns=["rank", "micro_batch", "desirable", "undesirable", "rows"]).to_csv(index=False))
    chosen = {}
    if selector is not None:
        trainer.accelerator.wait_for_everyone()  # the best adapter is on disk (written by the main process)
        chosen = selector.restore(trainer.model)
    if main:
        trainer.save_model(str(run / "adapter"))
        trained = dict(
            **chosen, steps=trainer.state.global_step, processes=trainer.accelerator.num_processes,
            resumed_from_step=resume.step_of(last) if last else None, train_seconds=train_seconds,
            train_tokens_per_second=_tokens_seen(trainer, args) / train_seconds if train_seconds else math.nan,
            single_label_batches_trained=sum(1 for b in batches if min(b[2], b[3]) == 0) if batches else None)
        res.write_json(run / "trained.json", trained)  # from here on a rerun evaluates instead of training
        shutil.rmtree(args.output_dir, ignore_errors=True)
        _evaluate_and_write(recipe, trainer.model, tok, prepared, args, run, trained, backend)
    trainer.accelerator.wait_for_everyone()
    del trainer, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return run


def _best_checkpoint(recipe, prepared, tok, args, run: Path, main: bool):
    """The callback that scores every checkpoint on the validation split (prefopt.selection)."""
    from .selection import make_callback

    return make_callback(metric=recipe.eval.select_metric, rows=prepared.validation_rows.to_dict("records"),
                         pairs=prepared.validation_pairs.to_dict("records"), tok=tok,
                         batch_size=recipe.eval.batch_size, max_length=getattr(args, "max_length", None),
                         run=run,
                         best_dir=Path(args.output_dir) / "best", main=main)


def _evaluate_and_write(recipe, model, tok, prepared, args, run: Path, trained: dict, backend: str) -> None:
    metrics, items, cache_entries = evaluate(recipe, model, tok, prepared, args, cache=run.parents[2], backend=backend)
    for path, content in cache_entries.items():  # the reference's scores / generations, computed this time
        res.write_atomic(path, content)
    write_items(run, items)
    metrics.update(
        recipe=recipe.name, method=recipe.method, strategy=prepared.report["strategy"], seed=recipe.seed,
        run_id=run.name, eval_fingerprint=prepared.report["eval_fingerprint"], data_path=recipe.data.path,
        **({"fold": recipe.data.fold, "folds": recipe.data.folds, "partition": prepared.report["partition"]}
           if recipe.data.folds > 1 else {}),
        weights_dtype=precision_used(recipe, args)["weights"], autocast_bf16=bool(getattr(args, "bf16", False)),
        examples_used=prepared.report["examples_used"], peak_memory_mb=_peak_memory_mb(), split=recipe.eval.split,
        **({"tuned": recipe.tuned} if recipe.tuned else {}), **trained)
    res.write_json(run / "metrics.json", metrics)  # last: the run counts as finished from here on
    res.drop_replaced(run)
    closing_block(run, metrics)


def write_items(run: Path, items: dict) -> None:
    """Per-item evaluation records beside metrics.json (written before it): eval_items.csv, one row per
    held-out row; eval_generations.jsonl, one line per verified prompt. Small, so they are committed with
    the results and every statistic can be recomputed from the repository alone."""
    import pandas as pd

    res.write_atomic(run / "eval_items.csv", pd.DataFrame(items["rows"]).to_csv(index=False))
    if "generations" in items:
        res.write_jsonl(run / "eval_generations.jsonl", items["generations"])


def _own_progress(trainer) -> None:
    """prefopt's step progress instead of the trainer's bar and its per-step metric dicts (those go to
    train_log.csv); see console.trainer_progress."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from .console import trainer_progress

    for callback in (ProgressCallback, PrinterCallback):
        trainer.remove_callback(callback)
    trainer.add_callback(trainer_progress())


class LabelAudit:
    """Counts the labels of every micro-batch this process trains on, with a short fingerprint of each
    row's tokens (so which rows each process saw can be checked). It wraps the trainer's training_step,
    not its collator: accelerate's loader collates one batch ahead, so a collator would also count the
    batch fetched after the last step. Batches skipped on resume never reach it: before each checkpoint is
    written, each process stores its batches so far beside it (`labels-rank<R>.json`, by step), and a resumed
    run starts from the list stored for its checkpoint. Methods whose batches carry no labels record nothing."""

    def __init__(self, trainer, folder: Path, resumed_from: str | None):
        from transformers import TrainerCallback

        rank = int(os.environ.get("RANK", 0))
        file = folder / f"labels-rank{rank}.json"
        stored = json.loads(file.read_text()) if resumed_from and file.is_file() else {}
        self.seen = [tuple(b) for b in stored.get(str(resume.step_of(resumed_from)), [])] if resumed_from else []
        step = trainer.training_step

        def counted(model, inputs, *args, **kwargs):
            if isinstance(inputs, dict) and "label" in inputs:
                labels = [bool(x) for x in inputs["label"]]
                self.seen.append((sum(labels), len(labels) - sum(labels), _row_fingerprints(inputs)))
            return step(model, inputs, *args, **kwargs)

        trainer.training_step = counted  # instance attribute: the trainer's loop looks it up on self
        audit = self

        class Keep(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if control.should_save and audit.seen:  # before the checkpoint, as the clock
                    kept = json.loads(file.read_text()) if file.is_file() else {}
                    res.write_json(file, {**kept, str(state.global_step): audit.seen})

        trainer.add_callback(Keep())


def _row_fingerprints(inputs: dict) -> str:
    """crc32 of each row's unpadded input_ids, space-separated ('' when the batch has no input_ids)."""
    import zlib

    ids, mask = inputs.get("input_ids"), inputs.get("attention_mask")
    if ids is None:
        return ""
    rows = (ids[i][mask[i].bool()] if mask is not None else ids[i] for i in range(len(ids)))
    return " ".join(f"{zlib.crc32(r.cpu().numpy().tobytes()):08x}" for r in rows)


def broadcast(value):
    """The main process's value on every process (no-op without torch.distributed)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return value


def _tokens_seen(trainer, args) -> int:
    """Tokens in the training rows the run consumed (prompt + every completion the trainer reads)."""
    ds = trainer.train_dataset
    cols = [c for c in ds.column_names if c.endswith("_ids") and "type" not in c]
    rows = min(len(ds), trainer.state.global_step * args.per_device_train_batch_size *
               args.gradient_accumulation_steps * args.world_size)
    return int(sum(len(x) for c in cols for x in ds.select(range(rows))[c]))


def _peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _is_oom(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and ("out of memory" in str(e) or "can't allocate memory" in str(e)))
