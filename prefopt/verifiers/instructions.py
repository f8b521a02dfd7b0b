"""IFEval-style instruction constraints: one checker and one prompt-suffix renderer per family.

A constraint is the metadata `{"id": "<family>", "kwargs": {...}}` stored in each row's `constraint`
column. A completion passes only when it is a non-empty answer (something left after stripping
whitespace) and the constraint holds. Pure Python: nothing heavy is imported here.

An answer cut off by the token budget is not the answer the model would give: "at most 50 words" holds
for any 48-token prefix, "end with ..." and "one JSON object" almost never do. So `check` takes whether
the answer ended (`ended`), and a cut-off answer passes only where no continuation could undo the pass
(a family's `final`: the keyword is already there, the first word is complete; or a fail that stays one:
too many words or bullets, an opening no JSON object has); everywhere
else its verdict is open and counts as a fail (strict), and `settled` says which verdicts were open.

Keyword arguments use a distinct name per family and type (`max_words`, `keyword`, `phrase`, ...), so a
column of constraints stays one consistent struct when a loader (Arrow, pandas) unifies the dicts;
keys that such a loader fills with None are ignored.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable

from ..errors import UserError, did_you_mean

# A word: letters/digits (any script) possibly joined by apostrophes or hyphens ("don't", "well-known"), digits
# by a point or comma between digits ("3.14", "1,000"), or single letters each with a point ("e.g.", "U.S.").
# Text appended to an answer never lowers its count (a max_words fail or min_words pass on a cut-off answer
# stays what it is).
_WORD = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]\.?(?!\w)|\w+(?:(?:['’\-]|(?<=\d)[.,](?=\d))\w+)*")
# A markdown bullet: *, -, + or • at the start of a line followed by whitespace and some text.
# "**bold**" and "---" rules are not bullets (the marker must be followed by whitespace).
_BULLET = re.compile(r"^[ \t]*[*\-+•][ \t]+(\S.*)$", re.MULTILINE)
_BULLET_EXAMPLE = "this is a point"  # the prompt's example bullet; a copy of it is not a point of the answer
_FENCE = re.compile(r"^```[ \t]*[A-Za-z0-9_+-]*[ \t]*\n?(.*?)\n?[ \t]*```$", re.DOTALL)
_TITLE = re.compile(r"<<([^<>\n]+)>>")
# ASCII, fullwidth, ideographic, halfwidth ideographic, small, vertical presentation and Arabic commas
_COMMAS = (",", "\uff0c", "\u3001", "\uff64", "\ufe50", "\ufe51", "\ufe10", "\ufe11", "\u060c")
# A first word: letters/digits joined by hyphens ("In-depth" is not "In"); an apostrophe or an underscore
# (markdown emphasis: "_Sure_") ends it, so "Here's" starts with Here.
_FIRST = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
# What may wrap a first word: markdown emphasis/headings, quotes, brackets.
_LEADING = "*_#>\"'“‘«([` \t\r\n"


def _norm(s: str) -> str:
    """Unicode-normalized, case-folded text with runs of whitespace collapsed (for comparisons)."""
    return " ".join(unicodedata.normalize("NFKC", s).casefold().split())


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def _has_cased(text: str) -> bool:
    return any(c.lower() != c.upper() for c in text)


# --- checkers: (kwargs, stripped non-empty text) -> bool ------------------------------------------------


def _lowercase(kw, text):
    return _has_cased(text) and all(c.lower() == c for c in text)


def _uppercase(kw, text):
    return _has_cased(text) and all(c.upper() == c for c in text)


def _max_words(kw, text):
    return len(words(text)) <= int(kw["max_words"])


def _min_words(kw, text):
    return len(words(text)) >= int(kw["min_words"])


def _inflected(key: str) -> str:
    """A pattern for `key` and its inflections: -s, -es, -ed, -ing, also with a final e dropped (moving,
    moved), a final consonant doubled (stepped, swimming) or a final y turned to ie (cities)."""
    forms = [re.escape(key) + "(?:s|es|ed|ing)?"]
    if key.endswith("e"):
        forms.append(re.escape(key) + "d|" + re.escape(key[:-1]) + "ing")
    if key[-1:].isalpha() and key[-1:] not in "aeiouy":
        forms.append(re.escape(key + key[-1]) + "(?:ed|ing)")
    if key.endswith("y"):
        forms.append(re.escape(key[:-1]) + "i(?:es|ed)")
    return "(?:" + "|".join(forms) + ")"


def _mark(c: str) -> bool:
    return unicodedata.category(c).startswith("M") if c else False


def _keyword_matches(kw, text):
    # Case-insensitive; the keyword as a word of its own or inflected ("plants", "planting" count for "plant";
    # "implant", "photography" for "photo", "honeybees" for "honey" do not: the keyword inside another word);
    # "_soil_" is emphasis, not a longer word. Spelling alone decides, so "caring" counts for "car".
    # A combining mark (not a word character to `re`) belongs to the letter before it: "cat\u0301" is not "cat",
    # and a later mark can compose with that letter under NFKC ("cat\u0301" + "\u0323" -> "caṭ\u0301"), so a
    # keyword beside one could not be final.
    norm = _norm(text)
    pattern = r"(?<![^\W_])" + _inflected(_norm(kw["keyword"])) + r"(?![^\W_])"
    return (m for m in re.finditer(pattern, norm)
            if not _mark(norm[m.end():m.end() + 1]) and not _mark(norm[m.start() - 1:m.start()] if m.start() else ""))


def _include_keyword(kw, text):
    return next(_keyword_matches(kw, text), None) is not None


def _keyword_complete(kw, text, passed):
    # "soil." is final; a cut-off answer ending in "soil" may go on to "soily"
    end = len(_norm(text))
    return any(m.end() < end for m in _keyword_matches(kw, text))


def _end_with(kw, text):
    text, phrase = _norm(text), _norm(kw["phrase"])
    # the phrase's first word must be whole: "We behave a nice day." does not end with "Have a nice day."
    before = text[len(text) - len(phrase) - 1:len(text) - len(phrase)]
    return text.endswith(phrase) and not (phrase[:1].isalnum() and before.isalnum())


def _no_commas(kw, text):
    return not any(c in text for c in _COMMAS)


def _bullets(text):
    return [_norm(b).rstrip(".") for b in _BULLET.findall(text)]


def _bullet_points(kw, text):
    found = _bullets(text)
    return len(found) == int(kw["n_bullets"]) and _BULLET_EXAMPLE not in found


def _json_object(kw, text):
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text
    try:
        value = json.loads(body, parse_constant=_not_json)  # NaN, Infinity: Python's, not JSON's
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and len(value) > 0  # "{}" is not an answer


def _not_json(name):
    raise ValueError(f"{name} is not JSON")


_FENCE_OPEN = re.compile(r"```[ \t]*[A-Za-z0-9_+-]*[ \t]*\n?")


def _cannot_become_json(kw, text, passed):
    # One object, maybe fenced: an answer whose opening is neither "{" nor a fence (and then "{") fails,
    # whatever follows ("Here is the JSON: {...}" included)
    fence = _FENCE_OPEN.match(text)
    rest = text[fence.end():].lstrip() if fence else text
    return not (rest[:1] in ("", "{") or "```".startswith(text))


def _start_with(kw, text):
    # The first word is the leading run of word characters, so "Here's" and "Sure," start with Here / Sure.
    first = _FIRST.match(text.lstrip(_LEADING))
    return first is not None and _norm(first.group(0)) == _norm(kw["first_word"])


_TITLE_EXAMPLE = "my title"  # the example the prompt shows; copying it is not giving the answer a title


def _title(kw, text):
    return any(_norm(m) not in ("", _TITLE_EXAMPLE) for m in _TITLE.findall(text))


# --- final verdicts of a cut-off answer: (kwargs, stripped text, verdict) -> no continuation can change it ------


def _capital_or_lowercase_there(kw, text, passed):
    return not passed and _has_cased(text)  # the offending letter stays; with no letter yet, one may come


def _too_many_or_example_bullets(kw, text, passed):
    # bullets already there stay bullets; the example bullet copied on a whole line stays a copy
    lines = text.split("\n")
    whole = [_norm(b).rstrip(".") for b in _BULLET.findall("\n".join(lines[:-1]))]
    return len(_bullets(text)) > int(kw["n_bullets"]) or _BULLET_EXAMPLE in whole


def _first_word_complete(kw, text, passed):
    # "Here " is final, "Her" may become "Here" and "In-" "In-depth"
    text = text.lstrip(_LEADING)
    first = _FIRST.match(text)
    return first is not None and re.match(r"-?(?:[^\w-]|_)", text[first.end():]) is not None


# --- prompt suffixes ----------------------------------------------------------------------------------

def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True)
class Family:
    check: Callable[[dict, str], bool]
    render: Callable[[dict], str]
    kwargs: tuple[str, ...]  # required keyword arguments
    description: str
    # (kwargs, cut-off text, its verdict) -> whether no continuation could change that verdict; by default
    # none is final (end_with: the phrase may still come)
    final: Callable[[dict, str, bool], bool] = lambda kw, text, passed: False


FAMILIES: dict[str, Family] = {
    "lowercase": Family(
        _lowercase, lambda kw: "Your entire response must be in lowercase letters; no capital letters at all.",
        (), "only lowercase letters (at least one letter, no capitals)",
        _capital_or_lowercase_there),
    "uppercase": Family(
        _uppercase, lambda kw: "Your entire response must be in English and in capital letters only.",
        (), "only capital letters (at least one letter, no lowercase)",
        _capital_or_lowercase_there),
    "max_words": Family(
        _max_words, lambda kw: f"Answer in at most {_plural(int(kw['max_words']), 'word')}.",
        ("max_words",), "at most N words", lambda kw, text, passed: not passed),
    "min_words": Family(
        _min_words, lambda kw: f"Your answer must be at least {_plural(int(kw['min_words']), 'word')} long.",
        ("min_words",), "at least N words", lambda kw, text, passed: passed),
    "include_keyword": Family(
        _include_keyword, lambda kw: f"Include the word \"{kw['keyword']}\" in your response.",
        ("keyword",), "contains the keyword as a word or inflected (-s, -es, -ed, -ing; case-insensitive)",
        _keyword_complete),
    "end_with": Family(
        _end_with, lambda kw: f"Finish your response with the exact phrase \"{kw['phrase']}\". "
                              "No other words should follow it.",
        ("phrase",), "ends with the exact phrase (case and spacing ignored)"),
    "no_commas": Family(
        _no_commas, lambda kw: "Do not use any commas in your response.",
        (), "no commas (ASCII, fullwidth, ideographic, Arabic)", lambda kw, text, passed: not passed),
    "bullet_points": Family(
        _bullet_points, lambda kw: f"Your answer must contain exactly {_plural(int(kw['n_bullets']), 'bullet point')}"
                                   ". Use markdown bullet points such as:\n* This is a point.",
        ("n_bullets",), "exactly N markdown bullet points (*, -, + or •), none the prompt's example",
        _too_many_or_example_bullets),
    "json_object": Family(
        _json_object, lambda kw: "Wrap your entire output in JSON format: a single JSON object. "
                                 "You may use markdown code fences (```).",
        (), "the whole answer is one non-empty JSON object, optionally in a ``` fence", _cannot_become_json),
    "start_with": Family(
        _start_with, lambda kw: f"Start your response with the word \"{kw['first_word']}\".",
        ("first_word",), "starts with the given word (case-insensitive; leading quotes/markdown ignored)",
        _first_word_complete),
    "title": Family(
        _title, lambda kw: "Give your answer a title wrapped in double angular brackets, such as "
                           f"<<{_TITLE_EXAMPLE}>>.",
        (), f"has a title in <<double angle brackets>> (not the prompt's example <<{_TITLE_EXAMPLE}>>)",
        lambda kw, text, passed: passed),
}


_COUNTS = {"max_words", "min_words", "n_bullets"}  # the kwargs that are counts; the others are words or phrases


def _parse(meta) -> tuple[str, dict]:
    if isinstance(meta, str):  # a loader that keeps the column as JSON text (CSV)
        try:
            meta = json.loads(meta)
        except ValueError:
            raise UserError(None, "constraint", f"not a JSON constraint: {meta[:80]!r}; write it as a JSON object "
                            'like {"id": "lowercase", "kwargs": {}}') from None
    if meta is None or (isinstance(meta, float) and math.isnan(meta)):  # an empty cell: pandas reads it as NaN
        raise UserError(None, "constraint", "missing; every prompt of the generation test needs one, a JSON object "
                        'like {"id": "lowercase", "kwargs": {}}')
    if not isinstance(meta, dict) or "id" not in meta:
        raise UserError(None, "constraint", f"expected {{'id': <family>, 'kwargs': {{...}}}}, got {meta!r:.80}")
    family = meta["id"]
    if family not in FAMILIES:
        raise UserError(None, "constraint", f"unknown constraint id '{family}'; {did_you_mean(family, FAMILIES)}")
    kwargs = {k: v for k, v in (meta.get("kwargs") or {}).items() if v is not None}
    missing = [k for k in FAMILIES[family].kwargs if k not in kwargs]
    if missing:
        raise UserError(None, "constraint", f"constraint '{family}' needs kwargs {missing}, got {sorted(kwargs)}")
    # a kwarg the family does not read would be ignored without a word: {"id": "max_words", "kwargs": {"max_words":
    # 40, "min_words": 10}} checked the maximum alone, and the prompt asked for both (None: a loader's filler)
    extra = sorted(k for k in kwargs if k not in FAMILIES[family].kwargs)
    if extra:
        takes = f"only {list(FAMILIES[family].kwargs)}" if FAMILIES[family].kwargs else "no kwargs"
        raise UserError(None, "constraint", f"constraint '{family}' takes {takes}, got also {extra}; remove them "
                        "(one constraint per prompt: the verifier checks nothing else)")
    for k in FAMILIES[family].kwargs:  # checked here, before training, not by the judge after it
        v, whole = kwargs[k], k in _COUNTS
        # a whole number, also when a loader stored it as a float (2.0: a column with gaps)
        if whole and (isinstance(v, bool) or not isinstance(v, numbers.Real) or not float(v).is_integer() or v < 0):
            raise UserError(None, "constraint", f"constraint '{family}' needs {k} as a whole number of 0 or more, "
                            f"got {v!r}")
        if not whole and (not isinstance(v, str) or not v.strip()):
            raise UserError(None, "constraint", f"constraint '{family}' needs {k} as non-empty text, got {v!r}")
    return family, kwargs


def validate(meta) -> None:
    """Raise a UserError when `meta` is not a constraint `check` can read."""
    _parse(meta)


def check(meta, text: str, ended: bool = True) -> bool:
    """True when `text` is a non-empty answer that satisfies the constraint `meta`; for an answer the token
    budget cut off (`ended` False), only when no continuation could undo that (strict)."""
    family, kwargs = _parse(meta)
    text = (text or "").strip()
    if not text:
        return False
    passed = bool(FAMILIES[family].check(kwargs, text))
    return passed and (ended or FAMILIES[family].final(kwargs, text, passed))


def settled(meta, text: str, ended: bool = True) -> bool:
    """Whether the verdict on `text` is final: it ended, or what it already shows decides the constraint."""
    if ended:
        return True
    family, kwargs = _parse(meta)
    text = (text or "").strip()
    passed = bool(text) and bool(FAMILIES[family].check(kwargs, text))
    return bool(text) and FAMILIES[family].final(kwargs, text, passed)


def render(meta) -> str:
    """The instruction sentence that states the constraint, to append to a prompt."""
    family, kwargs = _parse(meta)
    return FAMILIES[family].render(kwargs)
