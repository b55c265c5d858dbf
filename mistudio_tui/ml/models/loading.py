"""Load a language model (local folder or hub id) with its tokenizer, in eval mode, on the chosen device."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mistudio_tui.ml.device import dtype_name, parse_dtype, pick_device
from mistudio_tui.ml.models.hooks import family_of

QUANTIZATIONS = (None, "8bit", "4bit")
# Encoder-only families that appear in the causal-LM auto mapping only for their rarely used decoder variant.
ENCODER_ONLY = frozenset(
    [
        "bert",
        "roberta",
        "xlm-roberta",
        "camembert",
        "distilbert",
        "electra",
        "albert",
        "deberta",
        "deberta-v2",
        "modernbert",
        "mpnet",
    ]
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
)
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


@dataclass
class LoadedModel:
    """A model ready for hooks: torch module (eval mode), tokenizer, config and where it runs."""

    model: nn.Module
    tokenizer: Any
    config: Any
    device: torch.device
    family: str
    is_causal_lm: bool
    name: str
    dtype: torch.dtype = torch.float32
    quantization: str | None = None
    path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def model_type(self) -> str:
        return str(getattr(self.config, "model_type", ""))


def is_causal_lm_config(config: Any) -> bool:
    """True when the config describes a decoder-only language model (loaded with AutoModelForCausalLM)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if getattr(config, "is_encoder_decoder", False):
        return False
    model_type = str(getattr(config, "model_type", ""))
    if model_type in ENCODER_ONLY:
        return bool(getattr(config, "is_decoder", False))
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return True
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def auto_class_for(config: Any) -> Any:
    """AutoModelForCausalLM for decoder LMs, AutoModel for everything else (BERT and friends)."""
    from transformers import AutoModel, AutoModelForCausalLM

    return AutoModelForCausalLM if is_causal_lm_config(config) else AutoModel


def _looks_like_path(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~")) or ref.count("/") > 1 or "\\" in ref


def resolve_model_ref(ref: str | Path) -> tuple[str, Path | None]:
    """(what to pass to from_pretrained, the local folder or None for a hub id); missing folders raise."""
    text = str(ref).strip()
    if not text:
        raise ValueError("model reference is empty; give a model folder or a hub id such as gpt2")
    path = Path(text).expanduser()
    if isinstance(ref, Path) or path.exists() or _looks_like_path(text):
        if not path.exists():
            raise FileNotFoundError(f"model folder {path} does not exist")
        if not path.is_dir():
            raise FileNotFoundError(f"model path {path} is not a folder")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model folder {path} has no config.json")
        return str(path), path
    return text, None


def load_config(ref: str | Path, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    """The transformers config of a model folder or hub id, with clear errors."""
    from transformers import AutoConfig

    source, local = resolve_model_ref(ref)
    if local is not None:
        try:
            json.loads((local / "config.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{local / 'config.json'} is not valid JSON: {exc}") from None
    try:
        return AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        where = local / "config.json" if local is not None else repr(source)
        raise ValueError(f"cannot read the model config {where}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a model folder (safetensors preferred)."""
    safetensors = sorted(folder.glob("*.safetensors"))
    if safetensors:
        return safetensors
    found: list[Path] = []
    for pattern in WEIGHT_PATTERNS[1:]:
        found.extend(p for p in sorted(folder.glob(pattern)) if p not in found)
    return found


def check_weight_files(folder: Path) -> list[Path]:
    """Raise a clear error naming the file when weights are missing or a safetensors file is corrupt."""
    from safetensors import safe_open

    files = weight_files(folder)
    if not files:
        raise FileNotFoundError(f"model folder {folder} has no weights (*.safetensors or pytorch_model*.bin)")
    for file in files:
        if file.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as exc:  # safetensors raises its own error type for every malformed file
            raise ValueError(f"weights file {file} is corrupt or truncated: {_first_line(exc)}") from None
    return files


def quantization_config(quantization: str | None, dtype: torch.dtype, device: torch.device) -> Any:
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; expected none, 8bit or 4bit")
    if quantization is None:
        return None
    if device.type != "cuda":
        raise ValueError(
            f"{quantization} quantization needs a CUDA GPU (bitsandbytes) and this run uses {device}; "
            "load in float16, bfloat16 or float32 instead"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ValueError(
            f"{quantization} quantization needs the bitsandbytes package: pip install bitsandbytes"
        ) from None
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_type="nf4")


def _accelerate_available() -> bool:
    from transformers.utils import is_accelerate_available

    return bool(is_accelerate_available())


def dtype_kwarg() -> str:
    """transformers renamed `torch_dtype` to `dtype` in 4.56."""
    import transformers

    major, minor = (int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _load_tokenizer(source: str, local: Path | None, revision: str | None, trust_remote_code: bool) -> Any:
    """The model's tokenizer, or None when it ships none (transformers would invent an empty one)."""
    from transformers import AutoTokenizer

    if local is not None and not any((local / name).is_file() for name in TOKENIZER_FILES):
        return None
    try:
        return AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def load_model(
    ref: str | Path,
    dtype: str | torch.dtype = "float32",
    quantization: str | None = None,
    device: str | torch.device | None = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a model folder or hub id: causal LMs through AutoModelForCausalLM, others through AutoModel."""
    torch_dtype = parse_dtype(dtype)
    target = device if isinstance(device, torch.device) else pick_device(device)
    quant_config = quantization_config(quantization, torch_dtype, target)
    source, local = resolve_model_ref(ref)
    config = load_config(ref, revision=revision, trust_remote_code=trust_remote_code)
    if local is not None:
        check_weight_files(local)
    auto_class = auto_class_for(config)
    kwargs: dict[str, Any] = {
        "revision": revision,
        "trust_remote_code": trust_remote_code,
        dtype_kwarg(): torch_dtype,
    }
    place_while_loading = quant_config is not None or (target.type == "cuda" and _accelerate_available())
    if quant_config is not None:
        kwargs["quantization_config"] = quant_config
    if place_while_loading:
        kwargs["device_map"] = {"": target}
    where = local if local is not None else repr(source)
    try:
        model = auto_class.from_pretrained(source, config=config, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, EOFError) as exc:
        raise ValueError(f"cannot load model weights from {where}: {_first_line(exc)}") from None
    if not place_while_loading:
        model = model.to(target)
    model.eval()
    tokenizer = _load_tokenizer(source, local, revision, trust_remote_code)
    name = str(local) if local is not None else source
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        config=config,
        device=target,
        family=family_of(config),
        is_causal_lm=auto_class.__name__ == "AutoModelForCausalLM",
        name=name,
        dtype=torch_dtype,
        quantization=quantization,
        path=local,
        info={"dtype": dtype_name(torch_dtype), "revision": revision, "model_class": type(model).__name__},
    )
