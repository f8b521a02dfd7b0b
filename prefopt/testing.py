"""Tiny models and data for tests and benchmarks: a random Llama-style model with its own byte-level BPE
tokenizer and ChatML template, and a small conversational feedback file. Built in-process, no network."""

from __future__ import annotations

import json
import random
from pathlib import Path

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = ("the a cat dog sun rain tree blue red green fast slow yes no write list poem short long about "
         "answer question keyword json title bullet word end start lowercase capital comma").split()


def build_tiny_model(path: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    corpus = [" ".join(random.Random(i).choices(WORDS, k=12)) + "\nuser assistant system" for i in range(200)]
    raw.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<|pad|>", eos_token="<|im_end|>",
                                  bos_token=None)
    tok.chat_template = CHATML
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


CONSTRAINTS = ({"id": "lowercase", "kwargs": {}}, {"id": "max_words", "kwargs": {"max_words": 6}},
               {"id": "no_commas", "kwargs": {}})


def write_feedback(path: Path, prompts: int = 40, per_prompt: int = 3, seed: int = 0,
                   constraints: bool = False) -> Path:
    """Conversational rows with about 3:1 desirable:undesirable, most prompts carrying both labels; with
    `constraints`, each prompt also carries a `constraint` the instructions verifier can check."""
    rng = random.Random(seed)
    rows = []
    for p in range(prompts):
        prompt = [{"role": "user", "content": f"question {p}: " + " ".join(rng.choices(WORDS, k=5))}]
        labels = [True] * per_prompt
        if p % 4 != 3:
            labels[rng.randrange(per_prompt)] = False  # ~3 of 4 prompts get an undesirable completion
        for label in labels:
            text = " ".join(rng.choices(WORDS, k=rng.randint(3, 9)))
            row = {"prompt": prompt, "completion": [{"role": "assistant", "content": text}], "label": label}
            if constraints:
                row["constraint"] = CONSTRAINTS[p % len(CONSTRAINTS)]
            rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_test_prompts(path: Path, prompts: int = 12, seed: int = 1) -> Path:
    """A generation-test file (`eval.prompts`): prompts with a `constraint` each, no completions."""
    rng = random.Random(seed)
    rows = [{"prompt": [{"role": "user", "content": f"test question {p}: " + " ".join(rng.choices(WORDS, k=5))}],
             "constraint": CONSTRAINTS[p % len(CONSTRAINTS)]} for p in range(prompts)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
