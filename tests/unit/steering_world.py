"""A tiny model + SAE with a planted feature, registered in the test's database, for the steering tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mistudio_tui.ml.sae.architectures import create_sae
from mistudio_tui.ml.sae.config import SAEConfig
from mistudio_tui.ml.sae.formats.saelens import save_saelens

HOOK = "blocks.1.hook_resid_post"
TRANSCODER_IN = "blocks.1.hook_resid_mid"  # a transcoder world reads here and writes HOOK
D_SAE = 16
PLANTED = 3  # decoder row = the unembedding direction of TARGET_TOKEN


@dataclass
class World:
    """What a steering test needs: the training id, model folder, SAE folder and the planted token."""

    training_id: int
    model_dir: Path
    sae_dir: Path
    target_token: int


def build_sae(model_dir: Path, target_token: int, seed: int = 0, transcoder: bool = False):
    """A ReLU SAE on d_model whose PLANTED decoder row points along the target token's unembedding (a transcoder:
    the same decoder, written to another hook than it reads)."""
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(model_dir)
    W_U = lm.get_output_embeddings().weight.detach()
    d_in = W_U.shape[1]
    gen = torch.Generator().manual_seed(seed)
    extra = {"d_out": d_in, "apply_b_dec_to_input": False} if transcoder else {}
    sae = create_sae(SAEConfig(d_in=d_in, d_sae=D_SAE, architecture="standard", **extra), gen)
    with torch.no_grad():
        W = torch.randn(D_SAE, d_in, generator=gen)
        direction = W_U[target_token] - W_U.mean(0)
        W[PLANTED] = direction
        W = W / W.norm(dim=1, keepdim=True)
        sae.W_dec.copy_(W)
        sae.W_enc.copy_(W.t())
        sae.b_enc.fill_(-0.05)
    return sae.eval()


def make_world(home: Path, model_dir: Path, target_token: int = 40, transcoder: bool = False) -> World:
    """Save the SAE (or transcoder: TRANSCODER_IN -> HOOK) under `home` and register model + training rows."""
    from mistudio_tui.config import paths
    from mistudio_tui.db.connection import open_database
    from mistudio_tui.db.models import LanguageModel, Training

    p = paths(home).ensure()
    open_database(p.db)
    sae_dir = p.dir("saes") / "1-planted"
    hooks = {"hook_name": TRANSCODER_IN, "hook_name_out": HOOK} if transcoder else {"hook_name": HOOK}
    save_saelens(build_sae(model_dir, target_token, transcoder=transcoder), sae_dir, hooks)
    lm = LanguageModel.create(name="tiny", path=str(model_dir), status="ready", model_type="gpt2", d_model=32)
    tr = Training.create(
        name="planted", model=lm, architecture="standard", hook_name=hooks["hook_name"], d_in=32, d_sae=D_SAE,
        status="completed", path=str(sae_dir), config={"hook_name_out": hooks.get("hook_name_out")},
    )  # fmt: skip
    return World(tr.id, model_dir, sae_dir, target_token)
