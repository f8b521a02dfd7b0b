"""Search spaces and the settings each tuning trial trains with. Pure (numpy only; no torch, no Ray).

A space maps a `train.*` key to one of
    {low: a, high: b, log: true}     a number drawn between a and b (log-uniform when log; integers stay whole
                                     when both bounds are)
    {values: [v1, v2, ...]}          one of the values
    {per: KEY, low: a, high: b}      a multiple of another key's drawn value (SimPO's gamma as gamma/beta)
Each method declares its default space (MethodSpec.search); a recipe's `tune.space` replaces the range of
the keys it names (null drops a key). The settings are drawn up front from `tune.seed`, so trial i has the
same settings whichever engine runs it, and a rerun finds the trials it already finished.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .errors import UserError, did_you_mean, raise_all

SAMPLERS = ("random", "grid")
_KEYS = {"low", "high", "log", "values", "per"}


def merge(default: dict, override: dict | None) -> dict:
    """The method's space with the recipe's `tune.space` laid over it (a key set to null is dropped)."""
    space = dict(default)
    for key, value in (override or {}).items():
        if value is None:
            space.pop(key, None)
        else:
            space[key] = value
    return space


def owned_by_the_run(spec) -> dict:
    """train.* fields the runner sets itself (key -> from where): searching one would train every trial alike."""
    owned = {k: "set by the run itself" for k in ("seed", "output_dir")}
    owned.update({k: "set from data.weights" for k in spec.weight_fields or ()})
    return owned


def check(space: dict, train_keys, *, file: str, fixed: dict = (), owned: dict = ()) -> None:
    """Every problem with a space, as UserErrors naming `tune.space.<key>` (train_keys: the TRL config's
    fields, None when they cannot be read without importing TRL)."""
    errors = []

    def bad(key, message):
        errors.append(UserError(file, f"tune.space.{key}", message))

    if not isinstance(space, dict) or not space:
        raise UserError(file, "tune.space", "nothing to search: give at least one train.* key with {low, high} or "
                        "{values: [...]}")
    for key, p in space.items():
        if train_keys is not None and key not in train_keys:
            bad(key, f"not a field of the method's TRL config; {did_you_mean(key, train_keys)}")
            continue
        if key in fixed:
            bad(key, f"the method fixes it to {fixed[key]!r}; it cannot be searched")
            continue
        if key in owned:
            bad(key, f"{owned[key]}, so every trial would train the same; it cannot be searched")
            continue
        if not isinstance(p, dict) or set(p) - _KEYS:
            extra = sorted(set(p) - _KEYS) if isinstance(p, dict) else []
            bad(key, (f"unknown key(s) {extra}; " if extra else "") + "expected {low: a, high: b, log: true|false}, "
                "{values: [...]} or {per: KEY, low: a, high: b}")
            continue
        if "values" in p:
            if set(p) != {"values"} or not isinstance(p["values"], list) or not p["values"]:
                bad(key, "values must be a non-empty list, alone")
            elif not all(v is None or isinstance(v, (str, int, float, bool)) for v in p["values"]):
                # a trial's setting is one value (and a row of trials.csv): a list or mapping is not one
                bad(key, f"values must be numbers, text, true/false or null, got {p['values']!r}")
            continue
        low, high = p.get("low"), p.get("high")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not low < high:
            bad(key, f"needs numbers low < high, got low={low!r}, high={high!r}")
        elif p.get("log") and low <= 0:
            bad(key, f"a log range needs low > 0, got {low}")
        if not isinstance(p.get("log", False), bool):  # YAML's 'false' in quotes is text, and text is true
            bad(key, f"log must be true or false (unquoted), got {p['log']!r}")
        partner = space.get(p["per"]) if isinstance(p.get("per"), str) else None  # per: [a] is no key
        if "per" in p and not (isinstance(partner, dict) and "per" not in partner and (
                {"low", "high"} <= set(partner) or _numbers(partner.get("values")))):
            bad(key, f"per: {p['per']!r} must name another searched key of numbers that is not itself a multiple")
    raise_all(errors)


def _numbers(values) -> bool:
    return isinstance(values, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _ends(p: dict) -> list:
    """A key's values at its limits, as a draw gives them: each listed value, or both ends of a range (whole
    when both ends are; a multiple's ends are factors)."""
    if "values" in p:
        return list(p["values"])
    whole = isinstance(p["low"], int) and isinstance(p["high"], int) and "per" not in p
    return [p["low"], p["high"]] if whole else [float(p["low"]), float(p["high"])]


def extremes(space: dict) -> list[tuple[str, object]]:
    """(key, value) for every value a key can take at its limits: each listed value, both ends of a range (as
    a draw gives them: whole when both ends are), and a multiple's products of its ends with its key's. The
    recipe's checks are limits, so a range passing them at both ends passes them between (a checked space)."""
    out = []
    for key, p in space.items():
        values = _ends(p)
        if "per" in p:
            values = sorted({float(f"{a * b:.4g}") for a in values for b in _ends(space[p["per"]])})
        out += [(key, v) for v in values]
    return out


def corners(space: dict) -> list[dict]:
    """Every combination of the keys' limits (a multiple resolved against its key's value in the same
    combination), as trial settings: for checks that read settings together, as TRL's config does."""
    keys = list(space)
    combos = itertools.product(*(_ends(space[k]) for k in keys))
    return _distinct([_resolve(dict(zip(keys, combo)), space) for combo in combos])


def shown(p: dict) -> str:
    """A key's space as a message shows it."""
    if "values" in p:
        return f"values {p['values']}"
    times = f" times {p['per']}" if "per" in p else ""
    return f"{p['low']} to {p['high']}{' (log)' if p.get('log') else ''}{times}"


def _draw(p: dict, rng: np.random.Generator):
    if "values" in p:
        return p["values"][int(rng.integers(len(p["values"])))]
    low, high = float(p["low"]), float(p["high"])
    x = math.exp(rng.uniform(math.log(low), math.log(high))) if p.get("log") else rng.uniform(low, high)
    if isinstance(p["low"], int) and isinstance(p["high"], int) and "per" not in p:
        return int(round(x))
    return float(f"{x:.4g}")  # four significant digits: readable settings, and the same value on every machine


def _points(p: dict, n: int) -> list:
    if "values" in p:
        return list(p["values"])
    low, high = float(p["low"]), float(p["high"])
    if isinstance(p["low"], int) and isinstance(p["high"], int) and "per" not in p:
        # every whole number of the range already: more points add none (a grid asked for 10**12 trials built
        # that many here)
        n = min(n, p["high"] - p["low"] + 1)
    if n == 1:  # one point: the middle of the range, not its lower end
        xs = [math.sqrt(low * high) if p.get("log") else (low + high) / 2]
    else:
        xs = np.geomspace(low, high, n) if p.get("log") else np.linspace(low, high, n)
    if isinstance(p["low"], int) and isinstance(p["high"], int) and "per" not in p:
        return sorted({int(round(x)) for x in xs})
    return [float(f"{x:.4g}") for x in xs]


def size(space: dict) -> float:
    """How many distinct settings the space holds at most: the product of its value lists' lengths and its
    whole-number ranges' widths; infinite with any other range (a multiple's products may coincide, so this
    bounds the count from above)."""
    def count(p):
        if "values" in p:
            return len(p["values"])
        whole = isinstance(p["low"], int) and isinstance(p["high"], int) and "per" not in p
        return p["high"] - p["low"] + 1 if whole else math.inf

    return math.prod(count(p) for p in space.values())


def _resolve(draw: dict, space: dict) -> dict:
    """Multiples ({per: KEY}) become values of their own key."""
    return {k: float(f"{v * draw[space[k]['per']]:.4g}") if "per" in space[k] else v for k, v in draw.items()}


def _grid(space: dict, trials: int) -> list[dict]:
    """Every combination of each value list and of at least trials**(1/d) points per range (d ranges), distinct.
    A whole-number range stops at its width, so that grid could hold fewer settings than asked of a space
    holding more (2..4 beside a rate: 12 for 13 trials, refused): then the ranges that still take points get
    more, in the shortfall's proportion, until it holds the trials (a grid that held them is never changed)."""
    ranges = [k for k, p in space.items() if "values" not in p]
    fixed_points = math.prod(len(p["values"]) for p in space.values() if "values" in p)
    per_range = max(1, math.ceil((trials / fixed_points) ** (1 / len(ranges)) - 1e-9)) if ranges else 1
    while True:
        axes = [_points(p, per_range) for p in space.values()]
        grid = _distinct([_resolve(dict(zip(space, combo)), space) for combo in itertools.product(*axes)])
        growing = [p for p, axis in zip(space.values(), axes) if "values" not in p and len(set(axis)) == per_range]
        if len(grid) >= trials or not growing or per_range >= trials:
            return grid
        per_range = min(trials, max(per_range + 1, math.ceil(per_range * (trials / len(grid)) ** (1 / len(growing)))))


def settings(space: dict, trials: int, *, seed: int, sampler: str = "random") -> list[dict]:
    """The train.* settings of every trial, in trial order. random: `trials` independent draws (each from its
    own seeded stream, so trial i does not depend on how many trials there are); grid: the full grid with
    at least trials**(1/d) points per range and every value list in full, thinned evenly to `trials`. Both
    give distinct settings only (a repeat would be the same run), so fewer than `trials` where the space
    has fewer; the caller decides what that means."""
    if sampler == "grid":
        grid = _grid(space, trials)
        if len(grid) <= trials:
            return grid
        return [grid[i] for i in np.unique(np.linspace(0, len(grid) - 1, trials).round().astype(int))]
    # never drawing for more than the space holds: towards more (up to 100 draws a trial, each compared with
    # every setting found) took 42 s to refuse --trials 20000 over two listed values
    trials = int(min(trials, size(space)))
    out, seen = [], set()
    for i in range(100 * trials):  # trial i's draw does not depend on the trial count; repeats are skipped
        rng = np.random.default_rng([int(seed), i])
        draw = _resolve({k: _draw(p, rng) for k, p in space.items()}, space)
        if _key(draw) not in seen:
            seen.add(_key(draw))
            out.append(draw)
            if len(out) == trials:
                break
    return out


def _key(point: dict) -> tuple:
    return tuple(sorted(point.items()))


def _distinct(points: list[dict]) -> list[dict]:
    seen, out = set(), []
    for p in points:
        if _key(p) not in seen:
            seen.add(_key(p))
            out.append(p)
    return out
