"""The `instructions` verifier: every constraint family passes and fails where it should."""

import subprocess
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from prefopt.errors import UserError
from prefopt.verifiers import VERIFIERS, Verifier, get_verifier
from prefopt.verifiers.instructions import FAMILIES, check, render, settled, words


def c(family, **kwargs):
    return {"id": family, "kwargs": kwargs}


# (constraint, text, expected) per family; each family has passing and failing cases.
CASES = {
    "lowercase": [
        (c("lowercase"), "all lowercase here, with punctuation!", True),
        (c("lowercase"), "  trailing spaces and newline are fine \n\n", True),
        (c("lowercase"), "straße und café — ünïcödé", True),
        (c("lowercase"), "one Capital", False),
        (c("lowercase"), "ÉCOLE", False),
        (c("lowercase"), "12345 !!!", False),  # no letter at all is not a lowercase answer
    ],
    "uppercase": [
        (c("uppercase"), "ALL CAPS, 100%!", True),
        (c("uppercase"), "ÉCOLE ÜBER ALLES", True),
        (c("uppercase"), "ALL CAPS BUT one", False),
        (c("uppercase"), "STRAßE", False),  # ß is a lowercase letter
        (c("uppercase"), "2024 — 42", False),
    ],
    "max_words": [
        (c("max_words", max_words=3), "one two three", True),
        (c("max_words", max_words=3), "don't well-known stop.", True),  # contractions/hyphens are one word
        (c("max_words", max_words=3), "один два три", True),
        (c("max_words", max_words=3), "one two three four", False),
        (c("max_words", max_words=3), "a\nb\tc\n d", False),
    ],
    "min_words": [
        (c("min_words", min_words=4), "one two three four", True),
        (c("min_words", min_words=4), "eins zwei drei vier fünf", True),
        (c("min_words", min_words=4), "one two three", False),
        (c("min_words", min_words=4), "one , two ... three --- !!", False),  # punctuation is not a word
    ],
    "include_keyword": [
        (c("include_keyword", keyword="plant"), "Water your Plants weekly.", True),
        (c("include_keyword", keyword="café"), "I like the CAFÉ downstairs.", True),
        (c("include_keyword", keyword="plant"), "An implant is not a plant-free word? planting!", True),
        (c("include_keyword", keyword="plant"), "An implant only.", False),  # must start a word
        (c("include_keyword", keyword="plant"), "Planting season.", True),  # inflected
        (c("include_keyword", keyword="car"), "Drive carefully.", False),  # inside another word
        (c("include_keyword", keyword="photo"), "I love photography.", False),
        (c("include_keyword", keyword="honey"), "Honeybees hum.", False),
        (c("include_keyword", keyword="photo"), "Old photos, new frames.", True),
        (c("include_keyword", keyword="bus"), "Two buses came.", True),
        (c("include_keyword", keyword="sun"), "The sun's warmth.", True),
        (c("include_keyword", keyword="move"), "Keep moving.", True),
        (c("include_keyword", keyword="practice"), "We practiced.", True),
        (c("include_keyword", keyword="step"), "She stepped in.", True),
        (c("include_keyword", keyword="swim"), "Swimming daily.", True),
        (c("include_keyword", keyword="city"), "Big cities.", True),
        (c("include_keyword", keyword="volunteer"), "Volunteering helps.", True),
        (c("include_keyword", keyword="volunteer"), "Volunteerism helps.", False),
        (c("include_keyword", keyword="bean"), "Coffee is great.", False),
    ],
    "end_with": [
        (c("end_with", phrase="Thank you."), "Here is my answer. Thank you.", True),
        (c("end_with", phrase="Thank you."), "Here is my answer. thank   you.  \n", True),
        (c("end_with", phrase="Thank you."), "Thank you. And more.", False),
        (c("end_with", phrase="Thank you."), "Here is my answer. Thank you", False),
        (c("end_with", phrase="Thank you."), "Thank you.", True),
    ],
    "no_commas": [
        (c("no_commas"), "No commas here. Just periods.", True),
        (c("no_commas"), "One, two", False),
        (c("no_commas"), "日本語、中国語", False),
        (c("no_commas"), "fullwidth，comma", False),
    ],
    "bullet_points": [
        (c("bullet_points", n_bullets=2), "Intro:\n* first\n* second", True),
        (c("bullet_points", n_bullets=2), "- first\n  - nested\n", True),
        (c("bullet_points", n_bullets=3), "* a\n- b\n• c", True),
        (c("bullet_points", n_bullets=2), "* a\n* b\n* c", False),
        (c("bullet_points", n_bullets=2), "**bold** line\n---\n* only one", False),
        (c("bullet_points", n_bullets=2), "1. numbered\n2. list", False),
        (c("bullet_points", n_bullets=2), "*\n* \n* a", False),  # empty bullets do not count
        (c("bullet_points", n_bullets=2), "* This is a point.\n* Water daily.", False),  # the prompt's example
        (c("bullet_points", n_bullets=2), "* this is a point\n* This is a point.", False),
        (c("bullet_points", n_bullets=2), "* This is a point about soil.\n* Water daily.", True),
        (c("bullet_points", n_bullets=2), "* a\n* b\n* c\n* This is a point.\nmore", False),
    ],
    "json_object": [
        (c("json_object"), '{"answer": "yes"}', True),
        (c("json_object"), '```json\n{"answer": "ünïcode"}\n```', True),
        (c("json_object"), '```\n{"a": [1, 2]}\n```\n', True),
        (c("json_object"), '  {"a": 1}  \n', True),
        (c("json_object"), '```JSON{"a": 1}```', True),
        (c("json_object"), "[1, 2, 3]", False),
        (c("json_object"), "{}", False),
        (c("json_object"), '```json\n{"a": 1,\n```', False),
        (c("json_object"), 'Here you go: {"a": 1}', False),
        (c("json_object"), '```json\n{"a": 1}\n```\nHope this helps!', False),
        (c("json_object"), "{'a': 1}", False),
        (c("json_object"), 'Sure! ```json\n{"a": 1}\n```', False),
        (c("json_object"), '```json\nHere: {"a": 1}\n```', False),
    ],
    "start_with": [
        (c("start_with", first_word="Sure"), "Sure, here it is.", True),
        (c("start_with", first_word="Sure"), '  **"sure!** ok', True),
        (c("start_with", first_word="Here"), "Here's the answer.", True),
        (c("start_with", first_word="Über"), "über alles", True),
        (c("start_with", first_word="Sure"), "Surely not.", False),
        (c("start_with", first_word="Sure"), "I am sure.", False),
    ],
    "title": [
        (c("title"), "<<My Poem>>\nRoses are red.", True),
        (c("title"), "Intro <<Über den Wolken>> text", True),
        (c("title"), "<<  >>\nno real title", False),
        (c("title"), "<My Poem>\nRoses", False),
        (c("title"), "<<broken\ntitle>>", False),
        (c("title"), "<<My Title>>\nRoses are red.", False),  # the prompt's own example, copied
        (c("title"), "<<my title>> <<Roses>>", True),
    ],
}


def test_every_family_has_passing_and_failing_cases():
    assert set(CASES) == set(FAMILIES)
    for family, cases in CASES.items():
        assert {expected for _, _, expected in cases} == {True, False}, family


@pytest.mark.parametrize("meta,text,expected",
                         [case for cases in CASES.values() for case in cases],
                         ids=[f"{fam}-{i}" for fam, cases in CASES.items() for i in range(len(cases))])
def test_checker(meta, text, expected):
    assert check(meta, text) is expected


@pytest.mark.parametrize("meta", [cases[0][0] for cases in CASES.values()], ids=list(CASES))
@pytest.mark.parametrize("text", ["", "   ", "\n\t \n", None])
def test_empty_text_never_passes(meta, text):
    assert check(meta, text) is False


@pytest.mark.parametrize("family", list(CASES))
def test_trailing_whitespace_does_not_change_the_verdict(family):
    for meta, text, expected in CASES[family]:
        assert check(meta, text + "  \n\n\t") is expected
        assert check(meta, "\n " + text) is expected


@pytest.mark.parametrize("family", list(CASES))
def test_render_states_the_constraint(family):
    meta = CASES[family][0][0]
    text = render(meta)
    assert text.strip() and text == text.strip()
    for value in meta["kwargs"].values():
        assert str(value) in text


def test_kwargs_filled_with_none_by_a_loader_are_ignored():
    # Arrow/pandas unify a column of dicts: every row gets every key, missing ones as None.
    meta = {"id": "max_words", "kwargs": {"max_words": 3, "keyword": None, "n_bullets": None}}
    assert check(meta, "one two") and not check(meta, "one two three four")


def test_constraint_given_as_json_text():
    assert check('{"id": "include_keyword", "kwargs": {"keyword": "cat"}}', "A cat.")


def test_numbers_stored_as_floats_still_work():
    assert check(c("bullet_points", n_bullets=2.0), "* a\n* b")


@pytest.mark.parametrize("meta,match", [
    ({"id": "lowercse", "kwargs": {}}, "did you mean 'lowercase'"),
    ({"kwargs": {}}, "expected"),
    ({"id": "max_words", "kwargs": {}}, "needs kwargs"),
    # a kwarg the family does not read was ignored: the prompt asked for more than was checked
    ({"id": "max_words", "kwargs": {"max_words": 40, "min_words": 10}}, r"takes only \['max_words'\], got also"),
    ({"id": "lowercase", "kwargs": {"keyword": "cat"}}, "takes no kwargs"),
    ("not json", "not a JSON constraint"),
    (float("nan"), "missing; every prompt"),  # an empty CSV cell (it said "got nan")
    (None, "missing; every prompt"),
    # values checked up front (validate runs before training), not found wrong by the judge after it
    ({"id": "max_words", "kwargs": {"max_words": "forty"}}, "whole number"),
    ({"id": "bullet_points", "kwargs": {"n_bullets": 2.9}}, "whole number"),
    ({"id": "min_words", "kwargs": {"min_words": True}}, "whole number"),
    ({"id": "include_keyword", "kwargs": {"keyword": 5}}, "non-empty text"),
    ({"id": "end_with", "kwargs": {"phrase": "  "}}, "non-empty text"),
])
def test_bad_constraint_is_a_user_error(meta, match):
    with pytest.raises(UserError, match=match):
        check(meta, "text")


def test_words():
    assert words("Don't stop — it's well-known, ok?") == ["Don't", "stop", "it's", "well-known", "ok"]
    assert words("") == []
    # numbers with a point or comma and abbreviations with points are one word each
    assert words("About 1,000 people, i.e. 3.14 per U.S. town, e.g. Boston.") == [
        "About", "1,000", "people", "i.e.", "3.14", "per", "U.S.", "town", "e.g.", "Boston"]
    assert words("one,two. 3,a end.Next") == ["one", "two", "3", "a", "end", "Next"]


@given(st.text(alphabet=st.sampled_from("ab1.,'- \n"), max_size=30), st.text(alphabet=st.sampled_from("ab1.,'- "),
                                                                               max_size=8))
def test_appended_text_never_lowers_the_word_count(text, more):
    # what makes a max_words fail and a min_words pass final on a cut-off answer
    assert len(words(text + more)) >= len(words(text))


@given(st.text())
def test_check_never_raises_and_returns_bool(text):
    for cases in CASES.values():
        assert isinstance(check(cases[0][0], text), bool)


@given(st.text(alphabet=st.characters(categories=["Ll", "Zs", "Nd", "Po"])))
def test_lowercase_letters_only_pass_lowercase(text):
    has_letter = any(ch.lower() != ch.upper() for ch in text)
    assert check(c("lowercase"), text) is (has_letter and bool(text.strip()))


@given(st.text(alphabet=st.characters(codec="ascii", categories=["L", "N", "P", "S", "Zs"]) | st.just("\n"),
               max_size=40))
def test_a_final_verdict_on_a_cut_off_answer_survives_any_continuation(more):
    # the promise `settled` makes: wherever the budget cut an answer, whatever the model would have written
    # next, the verdict stays
    for cases in CASES.values():
        for meta, text, _ in cases:
            for cut in (text[:k] for k in range(1, len(text) + 1)):
                if settled(meta, cut, ended=False):
                    assert check(meta, cut + more) == check(meta, cut), (meta, cut, more)


@given(st.lists(st.sampled_from(["cat", "soil", "t", "l", " ", ".", "\u0301", "\u0323", "\u0300", "\u0338", "\u0345",
                                  "_", "-", "s"]), max_size=8).map("".join),
       st.text(alphabet=st.sampled_from("\u0301\u0323\u0300\u0327x "), max_size=4))
@example("My cat\u0301", "\u0323 naps.")
def test_a_final_keyword_survives_combining_marks(text, more):
    # NFKC composes a letter with a mark that comes after another mark of a higher class ("cat\u0301" +
    # "\u0323" reads "caṭ\u0301"): a keyword beside a mark was final and then lost
    for keyword in ("cat", "soil"):
        meta = c("include_keyword", keyword=keyword)
        if settled(meta, text, ended=False):
            assert check(meta, text + more) == check(meta, text), (text, more)


def test_a_keyword_with_a_combining_mark_is_another_word():
    meta = c("include_keyword", keyword="cat")
    assert not check(meta, "My cat\u0301 sleeps.") and not settled(meta, "My cat\u0301", ended=False)
    assert not check(meta, "x\u0301cat sleeps.")
    assert check(meta, "My cafe\u0301 cat.")  # a mark elsewhere changes nothing


def test_a_cut_off_answer_passes_only_when_nothing_could_undo_it():
    fifty = c("max_words", max_words=50)
    short = "Gardening is slow work and the soil rewards patience " * 3  # 27 words, cut off by the budget
    assert check(fifty, short) and not check(fifty, short, ended=False) and not settled(fifty, short, ended=False)
    long = short * 2  # 54 words: too many already, whatever follows
    assert not check(fifty, long, ended=False) and settled(fifty, long, ended=False)
    assert check(c("include_keyword", keyword="soil"), short, ended=False)
    assert settled(c("include_keyword", keyword="soil"), short, ended=False)
    assert not settled(c("include_keyword", keyword="rain"), short, ended=False)  # it may come later
    assert check(c("start_with", first_word="Gardening"), short, ended=False)
    assert not check(c("start_with", first_word="Here"), "Her", ended=False)  # and not settled: "Here" may come
    assert not settled(c("start_with", first_word="Here"), "Her", ended=False)
    done = "Grow tomatoes. Have a nice day."
    assert check(c("end_with", phrase="Have a nice day."), done)
    assert not check(c("end_with", phrase="Have a nice day."), done, ended=False)
    assert not settled(c("json_object"), '{"a": 1}', ended=False) and settled(c("json_object"), '{"a": 1}')


def test_registry():
    v = get_verifier("instructions")
    assert isinstance(v, Verifier) and v.name == "instructions" and v.column == "constraint"
    assert v.check(c("title"), "<<t>> x") and v.description and v.settled(c("title"), "<<t>> x", False)
    assert VERIFIERS["instructions"] is v


def test_unknown_verifier_suggests_the_close_name():
    with pytest.raises(UserError) as e:
        get_verifier("instruction")
    assert e.value.field == "eval.verifier"
    assert "unknown verifier 'instruction'" in str(e.value) and "did you mean 'instructions'" in str(e.value)


def test_no_torch_import():
    code = "import sys, prefopt.verifiers; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("meta, text, ended, passes, final", [
    (c("end_with", phrase="Have a nice day."), "We behave a nice day.", True, False, True),  # not a whole word
    (c("end_with", phrase="Have a nice day."), "Thanks. HAVE a nice  day.", True, True, True),
    (c("json_object"), '{"a": NaN}', True, False, True),  # Python's NaN is not JSON
    (c("json_object"), '{"a": Infinity}', True, False, True),
    (c("no_commas"), "a\uff64b", True, False, True),  # halfwidth ideographic comma
    (c("no_commas"), "a\ufe10b", True, False, True),  # vertical presentation comma
    (c("start_with", first_word="Sure"), "_Sure_, here it is.", True, True, True),  # markdown emphasis
    (c("start_with", first_word="Sure"), "_Sure_, here", False, True, True),
    (c("start_with", first_word="In"), "In-depth knowledge matters.", True, False, True),  # one word
    (c("start_with", first_word="In"), "In-", False, False, False),  # may become In-depth
    (c("start_with", first_word="In"), "In - short", False, True, True),
    (c("start_with", first_word="Here"), "Here's a poem", True, True, True),
    (c("include_keyword", keyword="soil"), "Plants love rich _soil_.", True, True, True),
    (c("include_keyword", keyword="soil"), "Plants love rich soil", False, False, False),  # "soily" may follow
    (c("include_keyword", keyword="soil"), "Rich soil, then", False, True, True),
    (c("bullet_points", n_bullets=2), "* a\n* b\n* c", False, False, True),  # too many already
    (c("bullet_points", n_bullets=2), "* a\n* b", False, False, False),
    (c("bullet_points", n_bullets=2), "* This is a point.\n* b", False, False, True),  # the copy stays
    (c("bullet_points", n_bullets=2), "* b\n* This is a point.", False, False, False),  # "...point. Soil"
    (c("json_object"), "Here is the JSON: {", False, False, True),  # no object opens like that
    (c("json_object"), "```json\nThe", False, False, True),
    (c("json_object"), "``", False, False, False),
    (c("json_object"), '```json\n{"a"', False, False, False),
])
def test_realistic_answers_are_judged_as_a_reader_would(meta, text, ended, passes, final):
    assert check(meta, text, ended) is passes
    assert settled(meta, text, ended) is final
