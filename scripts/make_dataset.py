"""Make the shipped dataset: on-policy completions from SmolLM2-135M-Instruct labeled by instruction checks.

    python scripts/make_dataset.py --seed 0 --out data/feedback.jsonl

1. Builds everyday prompts from this file's own lists of tasks and topics, each with one verifiable
   IFEval-style constraint (family and parameters chosen with the seed).
2. Samples several completions per prompt from the model (seeded sampling, left-padded batches).
3. Labels every completion with the `instructions` verifier (desirable = non-empty and constraint holds).
4. Selects exactly --rows rows with --desirable desirable ones, preferring prompts that carry both labels
   and several completions, shuffles them with the seed and writes the file atomically, plus
   <out stem>.meta.json and data/README.md describing how it was made.

`--pool-out` keeps every sampled completion; `--from-pool` redoes only labeling + selection from such a file
(seconds instead of minutes). Same seed, same machine -> same file.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from prefopt.cli import OneLineParser, at_least, model_name
from prefopt.verifiers import instructions

# --- prompts --------------------------------------------------------------------------------------------

TASKS = [
    "Explain {t} to a ten-year-old.",
    "What are the main benefits of {t}?",
    "Give me some practical advice about {t}.",
    "Write a short poem about {t}.",
    "Describe {t} in a few sentences.",
    "Write a short story that involves {t}.",
    "What should a beginner know about {t}?",
    "Write the opening of a blog post about {t}.",
    "Tell me some interesting facts about {t}.",
    "Why do so many people enjoy {t}?",
    "Write a friendly message to a friend about {t}.",
    "What are the pros and cons of {t}?",
    "What is a common misconception about {t}?",
    "Write a short description of a book about {t}.",
    "How would you teach a friend about {t}?",
    "Write a short speech about {t}.",
    "Suggest some fun activities related to {t}.",
    "Give a brief history of {t}.",
    "Compare {t} with something from everyday life.",
    "What questions do people often ask about {t}?",
]

# topic -> (a word from the topic itself, words an answer about it may or may not use), for include_keyword
TOPICS = {
    "houseplants": ("houseplant", ["water", "light"]),
    "public transport": ("transport", ["bus", "city"]),
    "saving money": ("money", ["budget", "bank"]),
    "the water cycle": ("water", ["rain", "evaporation"]),
    "volcanoes": ("volcano", ["lava", "eruption"]),
    "healthy breakfasts": ("breakfast", ["fruit", "energy"]),
    "learning to swim": ("swim", ["water", "practice"]),
    "recycling": ("recycling", ["waste", "plastic"]),
    "time management": ("time", ["schedule", "task"]),
    "electric cars": ("car", ["battery", "charge"]),
    "honey bees": ("bee", ["honey", "flower"]),
    "the moon": ("moon", ["earth", "night"]),
    "rainforests": ("rainforest", ["tree", "animal"]),
    "board games": ("game", ["player", "fun"]),
    "baking bread": ("bread", ["flour", "oven"]),
    "getting enough sleep": ("sleep", ["rest", "night"]),
    "coffee": ("coffee", ["bean", "morning"]),
    "riding a bicycle": ("bicycle", ["ride", "balance"]),
    "photography": ("photo", ["camera", "light"]),
    "the ocean": ("ocean", ["fish", "wave"]),
    "friendship": ("friend", ["trust", "together"]),
    "chess": ("chess", ["move", "board"]),
    "gardening": ("garden", ["soil", "seed"]),
    "camping": ("camping", ["tent", "nature"]),
    "public libraries": ("public", ["book", "read"]),
    "solar energy": ("solar", ["sun", "panel"]),
    "dogs": ("dog", ["walk", "pet"]),
    "cats": ("cat", ["pet", "play"]),
    "drinking tea": ("tea", ["cup", "leaf"]),
    "learning a new language": ("language", ["word", "practice"]),
    "walking every day": ("walk", ["health", "step"]),
    "clouds": ("cloud", ["sky", "rain"]),
    "the internet": ("internet", ["computer", "information"]),
    "job interviews": ("interview", ["job", "question"]),
    "cooking rice": ("rice", ["water", "pot"]),
    "museums": ("museum", ["art", "history"]),
    "trains": ("train", ["track", "travel"]),
    "birds": ("bird", ["wing", "nest"]),
    "snow": ("snow", ["cold", "winter"]),
    "volunteering": ("volunteer", ["help", "community"]),
    "making soup": ("soup", ["vegetable", "pot"]),
    "playing the guitar": ("guitar", ["music", "string"]),
    "the solar system": ("solar", ["planet", "orbit"]),
    "writing a diary": ("diary", ["day", "thought"]),
    "drinking water": ("water", ["body", "health"]),
    "road trips": ("road", ["car", "travel"]),
    "dinosaurs": ("dinosaur", ["fossil", "million"]),
    "kindness": ("kind", ["people", "help"]),
}

# Constraint families used for the data, how often, and their parameters. Chosen with pilot runs of this
# script (110 prompts x 3 samples, all 11 families equally often) so that the model passes each family
# sometimes and fails it sometimes: lowercase and uppercase are left out (0 of 30 passed each), the hard
# ones (no_commas, end_with, json_object: 3-7%) are rare, the easy ones (include_keyword, min_words,
# title: 80-90%) frequent, so the pool holds enough desirable completions for a 746:254 file.
FAMILY_WEIGHTS = {
    "include_keyword": 6, "min_words": 4, "title": 3, "max_words": 3, "start_with": 3, "bullet_points": 3,
    "no_commas": 1, "end_with": 1, "json_object": 1,
}
END_PHRASES = ["Thank you.", "That is all.", "Have a nice day.", "I hope this helps."]
FIRST_WORDS = ["The", "Sure", "Here", "Yes", "Once", "In"]


PARAMETERS = {  # for the README: how _kwargs draws each family's arguments
    "max_words": "N in {40, 50} (about 60 words fit in 80 new tokens)",
    "min_words": "N in {20, 30, 40}",
    "include_keyword": "half the time a word of the topic itself, else one of two related words",
    "end_with": "one of " + ", ".join(f'"{p}"' for p in END_PHRASES),
    "bullet_points": "N in {2, 3, 4}",
    "start_with": "one of " + ", ".join(FIRST_WORDS),
}


def _kwargs(family: str, topic: str, rng: random.Random) -> dict:
    if family == "max_words":
        return {"max_words": rng.choice([40, 50])}
    if family == "min_words":
        return {"min_words": rng.choice([20, 30, 40])}
    if family == "include_keyword":
        literal, associated = TOPICS[topic]
        return {"keyword": literal if rng.random() < 0.5 else rng.choice(associated)}
    if family == "end_with":
        return {"phrase": rng.choice(END_PHRASES)}
    if family == "bullet_points":
        return {"n_bullets": rng.choice([2, 3, 4])}
    if family == "start_with":
        return {"first_word": rng.choice(FIRST_WORDS)}
    return {}


def make_prompts(n: int, seed: int, exclude: frozenset = frozenset()) -> list[dict]:
    """`n` distinct (task, topic) prompts, each with a seeded constraint; families in FAMILY_WEIGHTS ratio.
    `exclude`: question texts (a task with its topic filled in) that may not be used."""
    rng = random.Random(f"prompts-{seed}")
    combos = [(task, topic) for task in TASKS for topic in TOPICS if task.format(t=topic) not in exclude]
    if n > len(combos):  # (the caller names its option: --prompts or --test-prompts)
        raise ValueError(f"{n}: must be at most {len(combos)}, the distinct task x topic questions"
                         + (" that the excluded file does not ask" if exclude else ""))
    chosen = rng.sample(combos, n)
    # Families in proportion to the weights (largest remainder), then shuffled over the prompts.
    total = sum(FAMILY_WEIGHTS.values())
    quota = {f: n * w // total for f, w in FAMILY_WEIGHTS.items()}
    by_remainder = sorted(FAMILY_WEIGHTS, key=lambda f: -(n * FAMILY_WEIGHTS[f] % total))
    for f in by_remainder[: n - sum(quota.values())]:
        quota[f] += 1
    families = [f for f, q in quota.items() for _ in range(q)]
    rng.shuffle(families)
    prompts = []
    for i, ((task, topic), family) in enumerate(zip(chosen, families)):
        constraint = {"id": family, "kwargs": _kwargs(family, topic, rng)}
        text = task.format(t=topic) + " " + instructions.render(constraint)
        prompts.append({"prompt_id": i, "prompt": [{"role": "user", "content": text}], "constraint": constraint})
    return prompts


# what --from-pool reads of each pool row and of the generation settings in its .meta.json (--pool-out writes more)
POOL_KEYS = ("prompt_id", "prompt", "completion", "constraint")
GENERATION_KEYS = ("prompts_args", "samples_per_prompt", "max_new_tokens", "batch_size", "temperature", "top_p")


class BadRows(Exception):
    """Valid JSON that is not what this script reads: which line (or file) and what it lacks."""


def missing(row, keys: tuple, where: str = "") -> None:
    """BadRows unless `row` is a JSON object holding every key in `keys` (a KeyError or TypeError traceback
    otherwise, for --from-pool after the pool was read)."""
    if not isinstance(row, dict):
        raise BadRows(f"{where}not a JSON object")
    lacking = [k for k in keys if k not in row]
    if lacking:
        raise BadRows(f"{where}no {', '.join(json.dumps(k) for k in lacking)}")


def unreadable(e: Exception) -> str | None:
    """What is wrong with an input file that raised `e` while read (the option, the file and the fix are the
    caller's to name), or None for an error that is not about reading it."""
    if isinstance(e, OSError):
        return f"cannot be read ({e.strerror})"
    if isinstance(e, json.JSONDecodeError):
        return f"not a JSON-lines file ({e.msg})"
    if isinstance(e, UnicodeDecodeError):  # (a ValueError, like the too-many-prompts one: checked before it)
        return f"is not UTF-8 text (byte {e.start}); save it as UTF-8"
    if isinstance(e, BadRows):
        return str(e)
    return None


def rows_of(path: Path, keys: tuple, check=None) -> list[dict]:
    """The rows of a JSON-lines file, each checked to hold `keys` (and by `check`: a row -> what is wrong with
    it, or None); BadRows names the first line that does not."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            rows.append(json.loads(line))
            missing(rows[-1], keys, f"line {number}: ")
            wrong = check(rows[-1]) if check else None
            if wrong:
                raise BadRows(f"line {number}: {wrong}")
    return rows


def prompt_texts(prompt) -> list[str] | None:
    """A prompt's texts: itself, or every message's content (a system message may come before the question);
    None when it is neither a string nor a list of messages with a "content" string."""
    texts = [m.get("content") if isinstance(m, dict) else None for m in prompt] if isinstance(prompt, list) \
        else [prompt]
    return texts if texts and all(isinstance(t, str) for t in texts) else None


def questions_in(path: Path) -> frozenset:
    """The question texts (task with its topic) that the prompts of a data file use."""
    questions = [task.format(t=topic) for task in TASKS for topic in TOPICS]
    used = set()
    shape = "prompt: expected a string or a list of messages, each with a \"content\" string"
    for row in rows_of(path, ("prompt",), lambda row: None if prompt_texts(row["prompt"]) else shape):
        used.update(q for q in questions for t in prompt_texts(row["prompt"]) if t.startswith(q + " "))
    return frozenset(used)


def make_test_set(n: int, seed: int, exclude: Path) -> tuple[list[dict], dict]:
    """`n` prompts with constraints (no completions) for the verified generation test: questions that
    `exclude` (the training data) never asks, families in the same ratio as the data. Returns (rows, meta)."""
    used = questions_in(exclude)
    rows = [{"prompt": p["prompt"], "constraint": p["constraint"]} for p in make_prompts(n, seed, exclude=used)]
    text = jsonl(rows)
    meta = {"command": f"--test-prompts {n} --seed {seed} --exclude {exclude}", "seed": seed, "prompts": n,
            "excluded_questions": len(used), "excluded_from": str(exclude),
            "prompt_space": len(TASKS) * len(TOPICS), "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "families": dict(sorted(collections.Counter(r["constraint"]["id"] for r in rows).items()))}
    return rows, meta


# --- generation -----------------------------------------------------------------------------------------

def generate_pool(prompts: list[dict], *, samples: int, max_new_tokens: int, batch_size: int, temperature: float,
                  top_p: float, seed: int, model_name: str) -> tuple[list[dict], float]:
    """`samples` sampled completions per prompt. Returns (pool rows, generation seconds)."""
    import torch
    from tqdm import tqdm

    from prefopt.models import load_model

    torch.set_num_threads(2)
    model, tok = load_model(model_name, dtype="float32")
    model.eval()
    tok.padding_side = "left"
    rendered = [tok.apply_chat_template(p["prompt"], add_generation_prompt=True, tokenize=False) for p in prompts]
    lengths = [len(tok(r, add_special_tokens=False)["input_ids"]) for r in rendered]
    # Jobs sorted by prompt length (little padding); each batch seeded by its index: reproducible.
    jobs = sorted(((i, s) for i in range(len(prompts)) for s in range(samples)), key=lambda j: (lengths[j[0]], j))
    pool = []
    start = time.perf_counter()
    with torch.inference_mode(), tqdm(total=len(jobs), desc="generating", unit="completion") as bar:
        for b in range(0, len(jobs), batch_size):
            chunk = jobs[b:b + batch_size]
            batch = tok([rendered[i] for i, _ in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
            torch.manual_seed(seed * 1_000_003 + b)
            out = model.generate(**batch, do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
                                 max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
            new = out[:, batch["input_ids"].shape[1]:]
            for (i, s), ids in zip(chunk, new):
                ended = bool((ids == tok.eos_token_id).any())
                text = tok.decode(ids, skip_special_tokens=True)
                p = prompts[i]
                pool.append({"prompt_id": p["prompt_id"], "sample": s, "prompt": p["prompt"],
                             "completion": [{"role": "assistant", "content": text}],
                             "constraint": p["constraint"], "truncated": not ended})
            bar.update(len(chunk))
    seconds = time.perf_counter() - start
    pool.sort(key=lambda r: (r["prompt_id"], r["sample"]))
    return pool, seconds


def label_pool(pool: list[dict]) -> list[dict]:
    for r in pool:
        r["label"] = instructions.check(r["constraint"], r["completion"][0]["content"])
    return pool


# --- selection ------------------------------------------------------------------------------------------

def select_rows(pool: list[dict], n_rows: int = 1000, n_desirable: int = 746, seed: int = 0,
                max_per_prompt: int = 4) -> list[dict]:
    """Pick exactly `n_desirable` desirable and `n_rows - n_desirable` undesirable rows from `pool`.

    Rows are grouped by prompt (their `prompt` value). Preference order:
      1. one desirable + one undesirable from each prompt that has both labels (pairs for DPO/ORPO);
      2. more rows for prompts already chosen, round-robin, up to `max_per_prompt` rows per prompt;
      3. new prompts, two rows at a time (so they too carry more than one completion), then one;
      4. finally rows beyond `max_per_prompt`, only if nothing else is left.
    Within a prompt, completions that ended on their own come before truncated ones (`truncated` key,
    optional). Deterministic for a given pool order and seed; the result is shuffled with the seed.
    Raises ValueError when the pool cannot supply the counts.
    """
    n_undesirable = n_rows - n_desirable
    if not 0 <= n_desirable <= n_rows:
        raise ValueError(f"n_desirable={n_desirable} must be between 0 and n_rows={n_rows}")
    rng = random.Random(f"select-{seed}")
    groups: dict[str, dict[bool, list[dict]]] = {}
    for r in pool:
        key = json.dumps(r["prompt"], sort_keys=True, ensure_ascii=False)
        groups.setdefault(key, {True: [], False: []})[bool(r["label"])].append(r)
    have = {lab: sum(len(g[lab]) for g in groups.values()) for lab in (True, False)}
    if have[True] < n_desirable or have[False] < n_undesirable:
        raise ValueError(f"the pool has {have[True]} desirable and {have[False]} undesirable completions; "
                         f"{n_desirable} and {n_undesirable} are needed (sample more prompts or completions)")
    keys = sorted(groups)
    rng.shuffle(keys)
    for k in keys:
        for lab in (True, False):
            rows = groups[k][lab]
            rng.shuffle(rows)
            rows.sort(key=lambda r: bool(r.get("truncated", False)))  # stable: shuffled within each kind
    need = {True: n_desirable, False: n_undesirable}
    taken: dict[str, int] = collections.Counter()
    chosen: list[dict] = []

    def take(k: str, lab: bool) -> None:
        chosen.append(groups[k][lab].pop(0))
        taken[k] += 1
        need[lab] -= 1

    def round_robin(lab: bool) -> None:
        """One `lab` row at a time for each prompt already chosen, under max_per_prompt, until none is needed
        or none can give one."""
        progress = True
        while need[lab] and progress:
            progress = False
            for k in keys:
                if need[lab] and taken[k] and taken[k] < max_per_prompt and groups[k][lab]:
                    take(k, lab)
                    progress = True

    # 1. pairs from prompts with both labels
    for k in keys:
        if need[True] and need[False] and groups[k][True] and groups[k][False]:
            take(k, True)
            take(k, False)
    # The scarcer label is placed first, so it gets the chosen prompts' remaining room.
    for lab in sorted((True, False), key=lambda lab: have[lab] - need[lab]):
        # 2. round-robin over prompts already chosen, up to max_per_prompt
        round_robin(lab)
        # 3. new prompts: two rows at a time, then single rows
        for size in (2, 1):
            for k in keys:
                if need[lab] >= size and not taken[k] and len(groups[k][lab]) >= size:
                    for _ in range(size):
                        take(k, lab)
            # a new prompt with two rows can take more, round-robin, like step 2
            round_robin(lab)
        # 4. anything left, ignoring the per-prompt cap
        for k in keys:
            while need[lab] and groups[k][lab]:
                take(k, lab)
    assert need == {True: 0, False: 0}, need
    rng.shuffle(chosen)
    return chosen


# --- statistics, files ----------------------------------------------------------------------------------

def family_counts(rows: list[dict]) -> dict:
    """Per constraint family: desirable, undesirable, prompts, prompts with both labels."""
    out: dict[str, dict] = {}
    by_prompt: dict[tuple, set] = collections.defaultdict(set)
    for r in rows:
        fam = r["constraint"]["id"]
        c = out.setdefault(fam, {"desirable": 0, "undesirable": 0, "prompts": 0, "prompts_both_labels": 0})
        c["desirable" if r["label"] else "undesirable"] += 1
        by_prompt[(fam, json.dumps(r["prompt"], sort_keys=True))].add(bool(r["label"]))
    for (fam, _), labels in by_prompt.items():
        out[fam]["prompts"] += 1
        out[fam]["prompts_both_labels"] += len(labels) == 2
    for c in out.values():
        c["pass_rate"] = round(c["desirable"] / (c["desirable"] + c["undesirable"]), 4)
    return dict(sorted(out.items()))


def totals(counts: dict) -> dict:
    keys = ("desirable", "undesirable", "prompts", "prompts_both_labels")
    t = {k: sum(c[k] for c in counts.values()) for k in keys}
    t["pass_rate"] = round(t["desirable"] / max(t["desirable"] + t["undesirable"], 1), 4)
    return t


def rows_per_prompt(rows: list[dict]) -> dict:
    sizes = collections.Counter(collections.Counter(json.dumps(r["prompt"], sort_keys=True) for r in rows).values())
    return {str(k): sizes[k] for k in sorted(sizes)}


def output_row(r: dict) -> dict:
    return {"prompt": r["prompt"], "completion": r["completion"], "label": bool(r["label"]),
            "constraint": r["constraint"]}


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions of any other
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def unwritable(path: Path) -> str | None:
    """Why write_atomic cannot write `path` (None when it can), found before generation and before any file
    is written: an OSError came after the minutes of generation, or after --out and its .meta.json were
    written and before the README. Nothing is created here (write_atomic makes the missing folders)."""
    if path.is_dir():
        return "is a folder; give a file name"
    folder = path.parent
    while not folder.exists():  # (a path under a file does not exist either: its file is found above it)
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, not a folder; give a path in a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{folder} is not writable; give a folder you can write to"
    return None


def outputs(args) -> list[tuple[str, Path]]:
    """(option, path) of every file this command line writes."""
    generates = args.test_prompts is None and args.from_pool is None
    pool = [("--pool-out", args.pool_out), ("--pool-out", args.pool_out.with_suffix(".meta.json"))] \
        if generates and args.pool_out else []
    if args.test_prompts is not None:
        return [("--out", args.out), ("--out", args.out.with_suffix(".meta.json"))]
    if args.stats_only:
        return pool
    return [*pool, ("--out", args.out), ("--out", args.out.with_suffix(".meta.json")),
            ("--readme", args.readme or args.out.with_name("README.md"))]


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def readme(meta: dict) -> str:
    g, s = meta["generation"], meta["selection"]

    def table(before: dict, after: dict) -> str:
        lines = ["| family | pool desirable | pool undesirable | pool pass rate | pool prompts (both labels) "
                 "| shipped desirable | shipped undesirable | shipped prompts (both labels) |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for fam, b in before.items():
            a = after.get(fam, {"desirable": 0, "undesirable": 0, "prompts": 0, "prompts_both_labels": 0})
            lines.append(f"| {fam} | {b['desirable']} | {b['undesirable']} | {b['pass_rate']:.1%} "
                         f"| {b['prompts']} ({b['prompts_both_labels']}) | {a['desirable']} | {a['undesirable']} "
                         f"| {a['prompts']} ({a['prompts_both_labels']}) |")
        tb, ta = meta["pool"]["total"], s["total"]
        lines.append(f"| **all** | {tb['desirable']} | {tb['undesirable']} | {tb['pass_rate']:.1%} "
                     f"| {tb['prompts']} ({tb['prompts_both_labels']}) | {ta['desirable']} | {ta['undesirable']} "
                     f"| {ta['prompts']} ({ta['prompts_both_labels']}) |")
        return "\n".join(lines)

    fams = "\n".join(f"- `{f}` (weight {w}): {instructions.FAMILIES[f].description}"
                     + (f"; {PARAMETERS[f]}" if f in PARAMETERS else "") for f, w in meta["family_weights"].items())
    unused = ", ".join(f"`{f}`" for f in instructions.FAMILIES if f not in meta["family_weights"])
    per_prompt = ", ".join(f"{n} prompt{'s' * (n != 1)} with {k} rows" for k, n in s["rows_per_prompt"].items())
    return f"""# data/

`feedback.jsonl`: {s['total']['desirable'] + s['total']['undesirable']} rows, {s['total']['desirable']} desirable \
and {s['total']['undesirable']} undesirable, conversational form:

```json
{{"prompt": [{{"role": "user", "content": "..."}}], "completion": [{{"role": "assistant", "content": "..."}}],
 "label": true, "constraint": {{"id": "max_words", "kwargs": {{"max_words": 40}}}}}}
```

Made by `python scripts/make_dataset.py {meta['command']}` (same seed, same machine: same file;
sha256 `{meta['sha256']}`). Everything below is also in `feedback.meta.json`.

## How

- **Prompts** ({meta['pool']['prompts']}): the script's own everyday tasks x topics ({meta['prompt_space']} possible
  combinations), each followed by one verifiable IFEval-style instruction; family and parameters drawn with
  seed {meta['seed']}.
- **Completions**: sampled from `{g['model']}` (`{g['dtype']}`, through `prefopt.models.load_model`, the
  model's own chat template), {g['samples_per_prompt']} per prompt, temperature {g['temperature']}, top-p {g['top_p']},
  at most {g['max_new_tokens']} new tokens, batches of {g['batch_size']} (left padding), each batch seeded.
  Generation wall time: {g['seconds'] / 60:.1f} min ({g['seconds']:.0f} s) for {g['completions']} completions on
  {g['machine']};
  {g['truncated']} of them hit the token limit.
- **Labels**: the `instructions` verifier (`prefopt/verifiers/instructions.py`): desirable when the
  completion is non-empty after stripping whitespace and satisfies the prompt's constraint. The weak
  quantized 135M model often repeats itself; labels are whatever the checker says.
- **Selection** (`select_rows`): exactly {s['total']['desirable']} desirable + {s['total']['undesirable']} undesirable;
  first one desirable + one undesirable from each prompt that has both labels, then more completions for
  the chosen prompts round-robin (up to {s['max_per_prompt']} rows each), then new prompts two rows at a time, and
  more than {s['max_per_prompt']} rows for a prompt only when no other prompt has a completion of the needed
  label left; completions that ended on their own before truncated ones; rows shuffled with the seed.
  Shipped: {per_prompt}.

Reference model's verified success rate on sampled completions (all {meta['pool']['prompts']} prompts):
**{meta['pool']['total']['pass_rate']:.1%}**.

## Constraint families

{fams}

The verifier also knows {unused}; the data leaves them out because the model never passed them in the
pilot runs (a family needs both labels to be useful here).

## Label counts per family, before (pool) and after selection (shipped)

{table(meta['pool']['families'], s['families'])}
"""


def main(argv=None) -> int:
    ap = OneLineParser(prog=Path(__file__).name, description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="seed of the prompts, the sampling and the selection (default 0)")
    ap.add_argument("--out", type=Path, default=Path("data/feedback.jsonl"),
                    help="the dataset written, with its .meta.json beside it (default: data/feedback.jsonl)")
    ap.add_argument("--readme", type=Path, default=None, help="the data README written (default: README.md next to "
                    "--out)")
    ap.add_argument("--model", type=model_name, default="smollm2-135m-instruct",
                    help="alias or model folder that samples the completions (default: smollm2-135m-instruct)")
    ap.add_argument("--prompts", type=at_least(1), default=256, help="prompts built and sampled (default 256)")
    ap.add_argument("--samples-per-prompt", type=at_least(1), default=6,
                    help="completions sampled per prompt (default 6)")
    ap.add_argument("--max-new-tokens", type=at_least(1), default=80,
                    help="token budget of each sampled completion (default 80)")
    ap.add_argument("--batch-size", type=at_least(1), default=64, help="prompts per generation batch (default 64)")
    ap.add_argument("--temperature", type=float, default=0.8, help="sampling temperature, above 0 (default 0.8)")
    ap.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling top-p, in (0, 1] (default 0.95)")
    ap.add_argument("--rows", type=at_least(1), default=1000, help="rows selected into --out (default 1000)")
    ap.add_argument("--desirable", type=at_least(0), default=746,
                    help="desirable rows among --rows, at most --rows (default 746)")
    ap.add_argument("--max-per-prompt", type=at_least(1), default=4,
                    help="rows selected per prompt at most (default 4)")
    ap.add_argument("--pool-out", type=Path, default=None,
                    help="also keep every sampled completion here (default: not kept)")
    ap.add_argument("--from-pool", type=Path, default=None,
                    help="skip generation: relabel and select from a --pool-out file (and its .meta.json) "
                    "(default: generate)")
    ap.add_argument("--stats-only", action="store_true", help="print pool statistics, write nothing else "
                    "(default: off)")
    ap.add_argument("--test-prompts", type=at_least(1), default=None, metavar="N",
                    help="instead: write N constraint prompts (no completions, no model) for `eval.prompts`, "
                         "none asking a question that --exclude asks, to --out (and its .meta.json) (default: off)")
    ap.add_argument("--exclude", type=Path, default=Path("data/feedback.jsonl"),
                    help="with --test-prompts: the training data, whose questions the test prompts must not ask "
                    "(default: data/feedback.jsonl)")
    # set before the options are parsed: --model is checked then, and a hub id must fail there, not at loading
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = ap.parse_args(argv)
    # checked before the model is loaded: select_rows and generate refused these only after generation
    if args.desirable > args.rows:
        ap.error(f"--desirable: {args.desirable}: must be at most --rows ({args.rows})")
    if not args.temperature > 0:
        ap.error(f"--temperature: {args.temperature}: must be above 0 (completions are sampled)")
    if not 0 < args.top_p <= 1:
        ap.error(f"--top-p: {args.top_p}: must be above 0 and at most 1")
    for option, path in outputs(args):
        if why := unwritable(path):
            ap.error(f"{option}: {path}: {why}")
    if args.test_prompts is not None:
        try:
            rows, meta = make_test_set(args.test_prompts, args.seed, args.exclude)
        except (OSError, ValueError, BadRows) as e:
            why = unreadable(e)
            if why is None:  # more prompts than the questions --exclude leaves
                ap.error(f"--test-prompts: {e}")
            ap.error(f"--exclude: {args.exclude}: {why}; give the training data file whose questions the test "
                     "prompts must not ask")
        meta["command"] = f"--test-prompts {args.test_prompts} --seed {args.seed} --exclude {args.exclude} --out {args.out}"
        write_atomic(args.out, jsonl(rows))
        write_atomic(args.out.with_suffix(".meta.json"), json.dumps(meta, indent=2) + "\n")
        print(f"wrote {args.out}: {len(rows)} prompts, families {meta['families']}", file=sys.stderr)
        return 0

    if args.from_pool:
        reading = args.from_pool
        try:
            pool = rows_of(reading, POOL_KEYS)
            reading = args.from_pool.with_suffix(".meta.json")
            gen = json.loads(reading.read_text(encoding="utf-8"))
            missing(gen, GENERATION_KEYS)
        except (OSError, ValueError, BadRows) as e:
            ap.error(f"--from-pool: {reading}: {unreadable(e) or e}; give a file that --pool-out wrote, with its "
                     ".meta.json beside it")
        n_prompts = len({r["prompt_id"] for r in pool})
    else:
        try:
            prompts = make_prompts(args.prompts, args.seed)
        except ValueError as e:  # before the model is loaded
            ap.error(f"--prompts: {e}")
        n_prompts = len(prompts)
        pool, seconds = generate_pool(prompts, samples=args.samples_per_prompt, max_new_tokens=args.max_new_tokens,
                                      batch_size=args.batch_size, temperature=args.temperature, top_p=args.top_p,
                                      seed=args.seed, model_name=args.model)
        import platform

        import torch
        import transformers

        gen = {"model": args.model, "dtype": "float32", "samples_per_prompt": args.samples_per_prompt,
               "temperature": args.temperature, "top_p": args.top_p, "top_k": 0,
               "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "completions": len(pool),
               "seconds": round(seconds, 1), "truncated": sum(r["truncated"] for r in pool),
               "machine": f"{platform.machine()} CPU ({os.cpu_count()} cores, shared), torch threads "
                          f"{torch.get_num_threads()}",
               "torch": torch.__version__, "transformers": transformers.__version__,
               "prompts_args": {"prompts": args.prompts, "seed": args.seed}}
        print(f"generated {len(pool)} completions in {seconds:.0f} s ({seconds / 60:.1f} min)", file=sys.stderr)
        if args.pool_out:
            write_atomic(args.pool_out, jsonl(pool))
            write_atomic(args.pool_out.with_suffix(".meta.json"), json.dumps(gen, indent=2) + "\n")
    label_pool(pool)
    before = family_counts(pool)
    print(json.dumps({"pool": totals(before), "families": before}, indent=1), file=sys.stderr)
    if args.stats_only:
        return 0

    try:
        chosen = select_rows(pool, args.rows, args.desirable, seed=args.seed, max_per_prompt=args.max_per_prompt)
    except ValueError as e:  # a pool too small for the counts asked: the user's numbers, not a bug in the script
        print(f"make_dataset: error: --rows {args.rows} --desirable {args.desirable}: {e}", file=sys.stderr)
        return 2
    rows = [output_row(r) for r in chosen]
    text = jsonl(rows)
    after = family_counts(rows)
    meta = {
        "command": f"--seed {gen['prompts_args']['seed']} --out {args.out} "
                   f"--prompts {gen['prompts_args']['prompts']} --samples-per-prompt {gen['samples_per_prompt']} "
                   f"--max-new-tokens {gen['max_new_tokens']} "
                   f"--batch-size {gen['batch_size']} --temperature {gen['temperature']} --top-p {gen['top_p']}",
        "seed": gen["prompts_args"]["seed"],
        "selection_seed": args.seed,
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "prompt_space": len(TASKS) * len(TOPICS),
        "families": {f: instructions.FAMILIES[f].description for f in FAMILY_WEIGHTS},
        "family_weights": FAMILY_WEIGHTS,
        "generation": gen,
        "pool": {"prompts": n_prompts, "total": totals(before), "families": before},
        "selection": {"rows": args.rows, "max_per_prompt": args.max_per_prompt, "total": totals(after),
                      "families": after, "rows_per_prompt": rows_per_prompt(rows)},
    }
    write_atomic(args.out, text)
    write_atomic(args.out.with_suffix(".meta.json"), json.dumps(meta, indent=2) + "\n")
    write_atomic(args.readme or args.out.with_name("README.md"), readme(meta))
    print(f"wrote {args.out}: {len(rows)} rows, {after and totals(after)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
