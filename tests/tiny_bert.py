"""A tiny randomly initialised BERT (2 layers, hidden 32), optionally with a WordPiece tokenizer: built offline."""

from __future__ import annotations

from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def save_tiny_bert(out: Path, vocab_size: int) -> None:
    """Write a BertForMaskedLM with `vocab_size` embeddings into `out` with save_pretrained."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertForMaskedLM(config).save_pretrained(out)


def save_wordpiece_tokenizer(out: Path, texts: list[str]) -> int:
    """A lower-casing WordPiece tokenizer over the characters and words of `texts` ([CLS] … [SEP]); its size."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w.strip(".,;:()!?'\"").lower() for text in texts for w in text.split()} - {""})
    chars = sorted({c for text in texts for c in text.lower() if not c.isspace()})
    tokens = dict.fromkeys([*SPECIAL, *chars, *(f"##{c}" for c in chars), *words])  # in order, without repeats
    vocab = {tok: i for i, tok in enumerate(tokens)}
    wordpiece = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=64,
    )
    tok.save_pretrained(out)
    return len(vocab)
