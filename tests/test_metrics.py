"""Held-out metrics: policy/reference log-probs from one PEFT model with the adapter toggled."""

import math

import numpy as np
import pytest
import torch

from prefopt.metrics import encode, score_rows, summarize


@pytest.fixture  # one per test: several tests set the adapter's weights, and under xdist a worker runs any
def peft_model(tiny_model):  # subset of this module, so a shared model's state depended on the schedule
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    # PEFT draws LoRA's A matrices from the global generator, whose state depends on which tests this xdist
    # worker ran before: seeded here, every test sees the same adapter (an unseeded A once made one tiny
    # model's greedy answer a single repeated word, and a test asking for two words failed in CI only)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                               LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    return model, tok


def _adapter_does_something(model, seed: int = 0):
    """Seeded random LoRA B weights (B starts at zero, where the policy is the reference): the same model,
    so the same text, on every run and whichever tests ran before."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


ROWS = [
    {"prompt": [{"role": "user", "content": "the cat"}], "completion": [{"role": "assistant", "content": "a dog"}], "label": True},
    {"prompt": [{"role": "user", "content": "the cat"}], "completion": [{"role": "assistant", "content": "blue sun"}], "label": False},
    {"prompt": [{"role": "user", "content": "red tree"}], "completion": [{"role": "assistant", "content": "yes no"}], "label": True},
    {"prompt": "plain text prompt", "completion": " plain answer", "label": False},
]
PAIRS = [{"prompt": ROWS[0]["prompt"], "chosen": ROWS[0]["completion"], "rejected": ROWS[1]["completion"]}]


def test_encode_marks_the_completion(peft_model):
    _, tok = peft_model
    ids, start = encode(tok, ROWS[0]["prompt"], ROWS[0]["completion"], None)
    assert tok.decode(ids[start:]).startswith("a dog<|im_end|>")
    ids, start = encode(tok, ROWS[0]["prompt"], ROWS[0]["completion"], 5)
    assert len(ids) == 5 and start == 5  # truncated away: no completion token left


def test_untrained_adapter_means_zero_reward_and_kl(peft_model):
    model, tok = peft_model  # LoRA B starts at zero: the policy equals the reference
    s = score_rows(model, tok, ROWS, batch_size=3, max_length=None)
    assert np.allclose(s["logp"], s["ref_logp"]) and np.allclose(s["kl"], 0, atol=1e-6)
    m = summarize(ROWS, s, PAIRS)
    assert m["reward_margin"] == pytest.approx(0, abs=1e-5) and m["kl"] == pytest.approx(0, abs=1e-6)


def test_scores_match_a_direct_computation_and_batching(peft_model, monkeypatch):
    import prefopt.metrics as metrics

    model, tok = peft_model
    monkeypatch.setattr(metrics, "REF_TOP_K", 10**6)  # the whole vocabulary: the KL is exact
    _adapter_does_something(model)
    s1 = score_rows(model, tok, ROWS, batch_size=1, max_length=None)
    s4 = score_rows(model, tok, ROWS, batch_size=4, max_length=None)  # padding must not change anything
    assert np.allclose(s1["logp"], s4["logp"], atol=1e-4) and np.allclose(s1["kl"], s4["kl"], atol=1e-4)
    # batches are length-sorted: scores still come back in row order, whatever order the rows are in
    back = score_rows(model, tok, ROWS[::-1], batch_size=3, max_length=None)
    for k in ("logp", "ref_logp", "tokens", "kl"):
        assert np.allclose(back[k][::-1], s1[k], atol=1e-4), k
    ids, start = encode(tok, ROWS[2]["prompt"], ROWS[2]["completion"], None)
    x = torch.tensor([ids])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=x).logits[0, :-1], -1)
        with model.disable_adapter():
            ref = torch.log_softmax(model(input_ids=x).logits[0, :-1], -1)
    targets = x[0, 1:]
    want = lp[start - 1:].gather(-1, targets[start - 1:, None]).sum().item()
    want_ref = ref[start - 1:].gather(-1, targets[start - 1:, None]).sum().item()
    want_kl = (lp.exp() * (lp - ref)).sum(-1)[start - 1:].sum().item()
    assert s1["logp"][2] == pytest.approx(want, rel=1e-4)
    assert s1["ref_logp"][2] == pytest.approx(want_ref, rel=1e-4)
    assert s1["kl"][2] == pytest.approx(want_kl, rel=1e-3) and want_kl > 0
    monkeypatch.setattr(metrics, "REF_TOP_K", 32)  # fewer tokens than the vocabulary: a lower bound
    coarse = score_rows(model, tok, ROWS, batch_size=1, max_length=None)
    assert 0 < coarse["kl"][2] <= want_kl * (1 + 1e-4)
    assert s1["tokens"][2] == len(ids) - start


def test_summarize_definitions():
    scores = {"logp": np.array([-1.0, -5.0, -2.0, -3.0]), "ref_logp": np.array([-2.0, -4.0, -2.0, -3.0]),
              "tokens": np.array([2.0, 2.0, 4.0, 1.0]), "kl": np.array([0.2, 0.2, 0.4, 0.2])}
    m = summarize(ROWS, scores, PAIRS)
    # rewards: +1, -1, 0, 0; labels T F T F -> AUC: positives {1, 0} vs negatives {-1, 0}: (1 + 1 + 1 + 0.5) / 4
    assert m["reward_auc"] == pytest.approx(3.5 / 4)
    assert (m["preference_accuracy"], m["reward_margin"]) == (1.0, 2.0)
    assert m["kl"] == pytest.approx(1.0 / 9)
    assert m["desirable_nll"] == pytest.approx(3.0 / 6) and m["desirable_nll_ref"] == pytest.approx(4.0 / 6)
    assert math.isnan(summarize(ROWS, scores, [])["preference_accuracy"])


def test_scores_do_not_depend_on_trimming_the_lm_head(peft_model, monkeypatch):
    """Logits are asked only from the first completion position (`logits_to_keep`); a model whose forward
    lacks that argument gets full logits, sliced after: both give the same scores."""
    import prefopt.metrics as metrics

    model, tok = peft_model
    assert metrics._accepts_logits_to_keep(model)  # so the first call below takes the trimmed path
    trimmed = score_rows(model, tok, ROWS, batch_size=4, max_length=None)
    monkeypatch.setattr(metrics, "_accepts_logits_to_keep", lambda m: False)
    full = score_rows(model, tok, ROWS, batch_size=4, max_length=None)
    for k in ("logp", "ref_logp", "tokens", "kl"):
        assert np.allclose(trimmed[k], full[k], atol=1e-5), k
    assert trimmed["tokens"].sum() > 0


def test_reference_from_the_cache_gives_the_same_scores(peft_model):
    """The reference's part of score_rows, packed and unpacked as the cache stores it, reproduces every
    score without the reference's forward pass."""
    from prefopt.metrics import pack_reference, unpack_reference

    model, tok = peft_model
    fresh = score_rows(model, tok, ROWS, batch_size=3, max_length=None)
    cached = unpack_reference(pack_reference(fresh["reference"]))
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        again = score_rows(model, tok, ROWS, batch_size=2, max_length=None, cached=cached)
    finally:
        handle.remove()
    assert len(calls) == 2  # two batches, policy only
    for k in ("logp", "ref_logp", "tokens", "kl"):
        assert np.allclose(again[k], fresh[k], atol=1e-5), k


def test_coarse_kl_is_a_close_lower_bound_of_the_full_kl():
    """KL over the reference's top tokens with the rest lumped together: never above the full KL, equal
    when the top set is the whole vocabulary, and close when it holds most of the mass."""
    from prefopt.metrics import coarse_kl

    g = torch.Generator().manual_seed(0)
    q = torch.log_softmax(3 * torch.randn(50, 400, generator=g), -1)
    p = torch.log_softmax(q + 0.5 * torch.randn(50, 400, generator=g), -1)
    full = (p.exp() * (p - q)).sum(-1)
    top_logp, top_index = q.topk(400, -1)
    assert torch.allclose(coarse_kl(p, top_index, top_logp), full, atol=1e-5)
    top_logp, top_index = q.topk(64, -1)
    coarse = coarse_kl(p, top_index, top_logp)
    assert (coarse <= full + 1e-6).all()
    assert coarse.sum() > 0.95 * full.sum()


def test_generation_with_the_adapter_merged_matches_and_restores_the_weights(peft_model, monkeypatch):
    """Policy generation merges the LoRA adapter for speed: same greedy text as the unmerged model, and
    the base weights (the reference) are back where they were afterwards."""
    import contextlib

    import prefopt.metrics as metrics

    model, tok = peft_model
    _adapter_does_something(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    prompts = [r["prompt"] for r in ROWS[:3]]  # chat prompts (one form per batch)
    merged = metrics.generate(model, tok, prompts, batch_size=2, max_new_tokens=6)
    after = dict(model.named_parameters())
    assert all(torch.allclose(before[n], after[n], atol=1e-6) for n in before)
    monkeypatch.setattr(metrics, "merged_adapter", lambda m: contextlib.nullcontext())
    assert metrics.generate(model, tok, prompts, batch_size=2, max_new_tokens=6) == merged


def test_bf16_generation_with_cached_weight_casts_matches_and_is_never_stale(peft_model, monkeypatch):
    """Under bf16 autocast, generation keeps autocast's bf16 copies of the frozen weights for the pass: the
    same text as casting at every step, for the reference and then the merged policy (a cache kept across
    the merge would give the policy the reference's weights), with requires_grad restored afterwards."""
    import contextlib

    import prefopt.metrics as metrics
    from prefopt.verifiers import get_verifier

    model, tok = peft_model
    _adapter_does_something(model)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    rows = [{"prompt": r["prompt"], "constraint": {"id": "include_keyword", "kwargs": {"keyword": "the"}}} for r in ROWS[:3]]
    verifier = get_verifier("instructions")

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            result, records, ref = metrics.verified_success(model, tok, rows, verifier, batch_size=2, max_new_tokens=6)
        return [(r["reference_text"], r["policy_text"]) for r in records]

    cached = run()
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert any(ref != pol for ref, pol in cached)  # the adapter changes the text: a stale cache would show
    monkeypatch.setattr(metrics, "cached_autocast_casts", lambda m: contextlib.nullcontext())
    assert run() == cached


def test_generation_batches_prompts_by_length_and_answers_in_their_order(peft_model, monkeypatch):
    """Prompts of similar length share a batch (little left padding), and every text comes back at its
    prompt's place: the same texts as generating each prompt alone, in the order given."""
    import prefopt.metrics as metrics

    model, tok = peft_model
    prompts = [[{"role": "user", "content": c}] for c in
               ("a b c d e f g h i j k l", "x", "the cat sat on the mat today", "y z", "q r s t u v")]
    widths = []
    generate = type(model).generate
    monkeypatch.setattr(type(model), "generate",
                        lambda self, **kw: widths.append(int(kw["attention_mask"].sum(1).min())) or generate(self, **kw))
    together = metrics.generate(model, tok, prompts, batch_size=2, max_new_tokens=5)
    lengths = [len(tok.apply_chat_template(p, add_generation_prompt=True, tokenize=True)["input_ids"]) for p in prompts]
    assert widths == sorted(lengths)[::2]  # each batch starts at the next shortest prompt
    alone = [metrics.generate(model, tok, [p], batch_size=1, max_new_tokens=5) for p in prompts]
    assert together == tuple([a[i][0] for a in alone] for i in (0, 1))  # the texts, and whether each ended


def test_generation_says_which_answers_ended_and_verification_is_strict_on_the_rest(peft_model, monkeypatch):
    """An answer that stopped on an end-of-sequence token is `ended`; one the budget cut off is not, and the
    verified test passes it only when the constraint is already settled (a keyword is there), never for
    'at most N words' (which any cut-off answer would satisfy)."""
    import prefopt.metrics as metrics
    from prefopt.verifiers import get_verifier

    from prefopt.verifiers.instructions import words

    model, tok = peft_model
    prompt = ROWS[0]["prompt"]
    # the untrained tiny model answers with newlines only, and a random adapter's answer is gibberish that may
    # be one long word: take the first seeded adapter whose cut-off answer holds a whole word and more
    for seed in range(20):
        _adapter_does_something(model, seed)
        cut, _ = metrics.generate(model, tok, [prompt], batch_size=1, max_new_tokens=16)
        if len(words(cut[0])) > 1:
            break
    else:
        pytest.fail("no adapter seed in 0-19 gives a cut-off answer of two words or more")
    texts, ended = metrics.generate(model, tok, [prompt], batch_size=1, max_new_tokens=4)
    ids = tok.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    first = int(model.generate(**ids, max_new_tokens=1, do_sample=False, pad_token_id=tok.pad_token_id)[0, -1])
    monkeypatch.setattr(model.generation_config, "eos_token_id", first)  # the answer's first token ends it
    stopped, stopped_ended = metrics.generate(model, tok, [prompt], batch_size=1, max_new_tokens=4)
    assert ended == [False] and stopped_ended == [True] and len(stopped[0]) < len(texts[0])
    monkeypatch.undo()

    keyword = words(cut[0])[0]  # what the cut-off answer already says, more following it; a loose word budget
    rows = [{"prompt": prompt, "constraint": {"id": "include_keyword", "kwargs": {"keyword": keyword}}},
            {"prompt": ROWS[2]["prompt"], "constraint": {"id": "max_words", "kwargs": {"max_words": 500}}}]
    result, records, (ref_texts, ref_ended) = metrics.verified_success(
        model, tok, rows, get_verifier("instructions"), batch_size=1, max_new_tokens=16)
    assert [r["policy_ended"] for r in records] == [False, False] and ref_ended == [False, False]
    assert [r["policy_pass"] for r in records] == [True, False]  # the word budget's verdict is open
    assert result["verified_success"] == 0.5 and result["verified_cut_off"] == 1.0 and result["verified_open"] == 0.5


def test_question_id_is_what_a_prompt_asks_whatever_its_form():
    from prefopt.metrics import prompt_id, question_id

    text, spaced = "How do I water ferns?", "  how do I  WATER ferns? "
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]
    assert len({prompt_id(p) for p in (text, spaced, messages)}) == 3
    assert len({question_id(p) for p in (text, spaced, messages)}) == 1
    assert question_id("How do I water cacti?") != question_id(text)
