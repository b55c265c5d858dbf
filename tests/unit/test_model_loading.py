"""Model loading, memory estimates and the architecture description, on tiny models saved with save_pretrained."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from mistudio_tui.ml.models.architecture import describe_config, describe_model
from mistudio_tui.ml.models.loading import LoadedModel, load_model
from mistudio_tui.ml.models.memory import build_on_meta, estimate_memory

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_bert import save_tiny_bert

    out = tmp_path_factory.mktemp("tiny-bert")
    save_tiny_bert(out, vocab_size=64)
    return out


@pytest.fixture
def copy_of(tmp_path: Path, tiny_lm_dir: Path) -> Path:
    dest = tmp_path / "model-copy"
    shutil.copytree(tiny_lm_dir, dest)
    return dest


def test_load_local_causal_lm(tiny_lm_dir: Path) -> None:
    loaded = load_model(tiny_lm_dir, device="cpu")
    assert isinstance(loaded, LoadedModel)
    assert not loaded.model.training
    assert loaded.is_causal_lm and loaded.family == "gpt2" and loaded.model_type == "gpt2"
    assert loaded.device == torch.device("cpu")
    assert loaded.tokenizer is not None and loaded.tokenizer("hello")["input_ids"]
    assert next(loaded.model.parameters()).dtype == torch.float32
    # the weights are the saved ones, not a fresh initialisation
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, reference(ids).logits)


def test_load_in_bfloat16(tiny_lm_dir: Path) -> None:
    loaded = load_model(str(tiny_lm_dir), dtype="bf16", device="cpu")
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    assert loaded.dtype == torch.bfloat16


def test_encoder_models_load_through_automodel(tiny_bert_dir: Path) -> None:
    loaded = load_model(tiny_bert_dir, device="cpu")
    assert not loaded.is_causal_lm
    assert loaded.family == "bert"
    assert type(loaded.model).__name__ == "BertModel"
    assert loaded.tokenizer is None  # no tokenizer files were saved


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "model"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_model(missing)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(f"./{tmp_path.name}/not-there")


def test_folder_without_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty has no config\.json"):
        load_model(tmp_path / "empty")


def test_folder_without_weights_is_a_clear_error(copy_of: Path) -> None:
    (copy_of / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="has no weights"):
        load_model(copy_of)


def test_corrupt_weights_name_the_file(copy_of: Path) -> None:
    weights = copy_of / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as err:
        load_model(copy_of)
    assert str(weights) in str(err.value) and "corrupt" in str(err.value)


def test_corrupt_config_names_the_file(copy_of: Path) -> None:
    (copy_of / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json"):
        load_model(copy_of)


def test_quantization_refused_without_cuda(tiny_lm_dir: Path) -> None:
    with pytest.raises(ValueError, match="CUDA"):
        load_model(tiny_lm_dir, quantization="8bit", device="cpu")
    with pytest.raises(ValueError, match="CUDA"):
        load_model(tiny_lm_dir, quantization="4bit", device="cpu")
    with pytest.raises(ValueError, match="expected none, 8bit or 4bit"):
        load_model(tiny_lm_dir, quantization="3bit", device="cpu")


def test_trust_remote_code_is_off_by_default(tiny_lm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    seen = {}
    original = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.update(kwargs)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    load_model(tiny_lm_dir, device="cpu")
    assert seen["trust_remote_code"] is False


def test_memory_estimate_matches_the_loaded_footprint(tiny_lm_dir: Path) -> None:
    for dtype in ("float32", "bfloat16"):
        loaded = load_model(tiny_lm_dir, dtype=dtype, device="cpu")
        assert estimate_memory(loaded.config, dtype) == loaded.model.get_memory_footprint()
    fp32 = estimate_memory(tiny_lm_dir, "float32")
    assert estimate_memory(tiny_lm_dir, "bfloat16") < fp32
    bf16 = estimate_memory(tiny_lm_dir, "bfloat16")
    assert estimate_memory(tiny_lm_dir, "bfloat16", "4bit") < estimate_memory(tiny_lm_dir, "bfloat16", "8bit") < bf16
    with pytest.raises(ValueError, match="quantization"):
        estimate_memory(tiny_lm_dir, "float32", "2bit")


def test_memory_estimate_needs_no_weights() -> None:
    from transformers import GPT2Config

    # GPT-2 small: the estimate comes from the meta-device instance, so no 500 MB allocation happens
    config = GPT2Config()
    meta = build_on_meta(config)
    assert next(meta.parameters()).device.type == "meta"
    n_params = sum(p.numel() for p in meta.parameters())
    assert estimate_memory(config, "float32") >= 4 * n_params
    assert estimate_memory(config, "float16") >= 2 * n_params


def test_describe_model_is_plain_json(tiny_lm_dir: Path) -> None:
    loaded = load_model(tiny_lm_dir, device="cpu")
    info = describe_model(loaded)
    assert json.loads(json.dumps(info)) == info
    assert info["family"] == "gpt2" and info["n_layers"] == 2 and info["d_model"] == 32 and info["n_heads"] == 2
    assert info["vocab_size"] == loaded.config.vocab_size and info["context_length"] == 64
    assert info["total_params"] == sum(p.numel() for p in loaded.model.parameters())
    assert info["trainable_params"] == info["total_params"]
    assert {"blocks.0.hook_resid_pre", "blocks.1.hook_mlp_out"} <= {p["name"] for p in info["hook_points"]}
    tree = info["modules"]
    assert tree["total_params"] == info["total_params"]
    transformer = next(c for c in tree["children"] if c["name"] == "transformer")
    assert sum(c["total_params"] for c in transformer["children"]) + transformer["params"] == tree["total_params"]


def test_describe_collapses_repeated_blocks() -> None:
    from transformers import LlamaConfig

    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=2
    )
    info = describe_config(config)
    assert json.loads(json.dumps(info)) == info
    model = next(c for c in info["modules"]["children"] if c["name"] == "model")
    layers = next(c for c in model["children"] if c["name"] == "layers")
    first, rest = layers["children"]
    assert first["path"] == "model.layers.0" and first["children"]
    assert rest["repeat"] == 5 and rest["same_as"] == "model.layers.0" and rest["name"] == "1..5"
    assert rest["total_params"] == 5 * first["total_params"]
    assert layers["total_params"] == 6 * first["total_params"]
    assert info["n_layers"] == 6 and len(info["hook_points"]) == 6 * 5
