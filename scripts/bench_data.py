"""Benchmark the data layer's transform time on 1,000,000 rows, next to a per-row pure-Python baseline.

    python scripts/bench_data.py            # --prompts 100000 --per-prompt 10 --repeats 3

The rows are built in memory (100,000 plain-string prompts x 10 completions, 3:1 desirable:undesirable),
so file reading is not part of any figure. Timed, best of --repeats (time.perf_counter):

  split     prompt codes + the seeded, stratified held-out split    (prefopt.data.split)
  mixed     the mixed KTO order for one epoch, batch 4               (prefopt.data.kto.mixed)
  pairing   one_to_one pairs of the train split                     (prefopt.data.pairs.make_pairs)
  prepare   the whole prepare() for KTO/mixed and for DPO/one_to_one, tables and report included

The baseline does the same split + mixed + pairing with dicts, lists and the random module, one row at a
time, as code without numpy would. The target is split + mixed + pairing <= 5 s on a 2-core machine.
Measures only; the tests never assert timings.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd

from prefopt.cli import OneLineParser, at_least
from prefopt.data import kto, prepare
from prefopt.data.pairs import make_pairs
from prefopt.data.split import PAIRS, group_codes, split_by_prompt, stream

BATCH = 4
FRACTION = 0.1
SEED = 0


def build(prompts: int, per_prompt: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = prompts * per_prompt
    labels = np.zeros(n, dtype=bool)
    labels[rng.permutation(n)[: n * 3 // 4]] = True  # exactly 3:1 overall, varying per prompt
    prompt = [f"prompt {i}: write about topic {i % 997}" for i in range(prompts) for _ in range(per_prompt)]
    completion = [f"completion {j} for prompt {i}" for i in range(prompts) for j in range(per_prompt)]
    df = pd.DataFrame({"prompt": prompt, "completion": completion, "label": labels})
    return df.assign(prompt_key=df["prompt"])  # what load_rows adds: plain-string prompts are their own key


def best(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


# --- vectorized (prefopt.data) ----------------------------------------------------------------------------

def vectorized(df: pd.DataFrame, repeats: int) -> dict:
    labels = df["label"].to_numpy(dtype=bool)

    def split():
        codes, keys = group_codes(df["prompt_key"])
        return codes, split_by_prompt(codes, keys, labels, eval_fraction=FRACTION, seed=SEED, file="bench")

    t_split, (codes, sp) = best(split, repeats)
    train_labels, train_codes = labels[sp.train], codes[sp.train]
    t_mixed, _ = best(lambda: kto.mixed(train_labels, train_codes, batch_size=BATCH, world_size=1, epochs=1,
                                        seed=SEED), repeats)
    t_pairs, _ = best(lambda: make_pairs(train_codes, train_labels, rng=stream(SEED, PAIRS)), repeats)
    common = dict(file="bench", eval_fraction=FRACTION, seed=SEED, batch_size=BATCH)
    t_kto, p = best(lambda: prepare(df, method="kto", form="unpaired", strategy="mixed", **common), repeats)
    t_dpo, q = best(lambda: prepare(df, method="dpo", form="paired", strategy="natural", **common), repeats)
    return {"split": t_split, "mixed": t_mixed, "pairing": t_pairs, "prepare kto/mixed": t_kto,
            "prepare dpo/one_to_one": t_dpo, "kto report": p.report, "dpo report": q.report}


# --- per-row pure-Python baseline -------------------------------------------------------------------------

def py_split(prompts: list, labels: list, fraction: float, seed: int):
    rows_of, desirable = {}, {}
    for i, (p, y) in enumerate(zip(prompts, labels)):
        rows_of.setdefault(p, []).append(i)
        desirable[p] = desirable.get(p, 0) + y
    rng = random.Random(seed)
    held = set()
    both = sorted(p for p in rows_of if 0 < desirable[p] < len(rows_of[p]))
    one = sorted(p for p in rows_of if not 0 < desirable[p] < len(rows_of[p]))
    for stratum in (both, one):
        rng.shuffle(stratum)
        held.update(stratum[: math.floor(fraction * len(stratum) + 0.5)])
    train = [i for i, p in enumerate(prompts) if p not in held]
    return train, held


def py_mixed(train: list, prompts: list, labels: list, batch: int, seed: int) -> list:
    rng = random.Random(seed)
    good = [i for i in train if labels[i]]
    bad = [i for i in train if not labels[i]]
    n = len(good) + len(bad)
    blocks = max(math.ceil(n / batch), math.ceil(max(len(good), len(bad)) / (batch - 1)))
    length = blocks * batch
    total = min(max(round(len(good) / n * length), len(good), blocks), length - len(bad), length - blocks)

    def fill(rows, count):
        extra = rows[:]
        rng.shuffle(extra)
        out = rows + [extra[k % len(extra)] for k in range(count - len(rows))]
        rng.shuffle(out)
        return out

    good, bad = fill(good, total), fill(bad, length - total)
    order, gi, bi = [], 0, 0
    for k in range(blocks):
        d = (k + 1) * total // blocks - k * total // blocks
        order += good[gi:gi + d] + bad[bi:bi + batch - d]
        gi, bi = gi + d, bi + batch - d
    # one repair pass: swap a row whose KL partner is of its prompt with a same-label row elsewhere
    for pos in range(len(order)):
        start = pos - pos % batch
        partner = start + (pos - start - 1) % batch
        if prompts[order[pos]] == prompts[order[partner]]:
            for _ in range(8):
                other = rng.randrange(len(order))
                if labels[order[other]] == labels[order[pos]] and other // batch != pos // batch:
                    order[pos], order[other] = order[other], order[pos]
                    break
    return order


def py_pairs(train: list, prompts: list, labels: list, seed: int) -> list:
    rng = random.Random(seed)
    groups = {}
    for i in train:
        groups.setdefault(prompts[i], ([], []))[0 if labels[i] else 1].append(i)
    pairs = []
    for good, bad in groups.values():
        rng.shuffle(good)
        rng.shuffle(bad)
        pairs += zip(good, bad)
    return pairs


def baseline(df: pd.DataFrame, repeats: int) -> dict:
    prompts, labels = df["prompt"].tolist(), df["label"].tolist()  # plain lists: the baseline's own input
    t_split, (train, _) = best(lambda: py_split(prompts, labels, FRACTION, SEED), repeats)
    t_mixed, _ = best(lambda: py_mixed(train, prompts, labels, BATCH, SEED), repeats)
    t_pairs, _ = best(lambda: py_pairs(train, prompts, labels, SEED), repeats)
    return {"split": t_split, "mixed": t_mixed, "pairing": t_pairs}


def main() -> None:
    ap = OneLineParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=at_least(1), default=100_000,
                    help="prompts of the in-memory rows (default 100000)")
    ap.add_argument("--per-prompt", type=at_least(1), default=10, help="completions per prompt (default 10)")
    ap.add_argument("--repeats", type=at_least(1), default=3,
                    help="timings of prefopt.data, the best one shown (default 3)")
    ap.add_argument("--baseline-repeats", type=at_least(1), default=1,
                    help="timings of the pure-Python baseline, the best one shown (default 1)")
    args = ap.parse_args()

    df = build(args.prompts, args.per_prompt)
    print(f"{len(df):,} rows, {args.prompts:,} prompts x {args.per_prompt}, "
          f"{int(df['label'].sum()):,} desirable : {int((~df['label']).sum()):,} undesirable; batch {BATCH}, "
          f"eval_fraction {FRACTION}; best of {args.repeats} (baseline: {args.baseline_repeats})")
    ours, theirs = vectorized(df, args.repeats), baseline(df, args.baseline_repeats)
    print(f"\n{'stage':<24}{'prefopt.data (s)':>18}{'pure Python (s)':>18}{'speed-up':>10}")
    for stage in ("split", "mixed", "pairing"):
        print(f"{stage:<24}{ours[stage]:>18.3f}{theirs[stage]:>18.3f}{theirs[stage] / ours[stage]:>9.1f}x")
    total, total_py = (sum(x[s] for s in ("split", "mixed", "pairing")) for x in (ours, theirs))
    print(f"{'split + mixed + pairing':<24}{total:>18.3f}{total_py:>18.3f}{total_py / total:>9.1f}x")
    for stage in ("prepare kto/mixed", "prepare dpo/one_to_one"):
        print(f"{stage:<24}{ours[stage]:>18.3f}{'':>18}")
    r, q = ours["kto report"], ours["dpo report"]
    print(f"\nkto/mixed: {r['batches']:,} batches, {r['single_label_batches']} single-label, "
          f"{r['kl_same_prompt_pairs']} same-prompt KL pairs, {r['repeated_examples']:,} repeated rows; "
          f"dpo: {q['pairs']:,} pairs, {q['unpaired_rows']:,} unpaired rows")
    print(f"target split + mixed + pairing <= 5 s: {'met' if total <= 5 else 'MISSED'} ({total:.2f} s)")


if __name__ == "__main__":
    main()
