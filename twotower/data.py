"""Tokenizer training and the token streams the trainer reads, all from the offline corpus.

The tokenizer is a sentencepiece BPE model with identity normalisation (code round-trips byte for byte:
no whitespace folding, no dummy prefix), byte fallback (any input tokenizes) and the fixed special ids
of twotower.tokenizer (0 pad, 1 bos, 2 eos, 3 unk, 4 mask).
Token streams are cached as uint16 .npy files (vocab < 65536) under a cache directory outside git, with
`corpus.json` saying which interpreter's library they were read from (export copies it into the model).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from .corpus import describe, split_files
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, SentencePieceTokenizer
from .path_checks import replace_whole

CORPUS_RECORD = "corpus.json"  # beside the cached streams
CHUNK_CHARS = 3000  # sentencepiece caps one training "sentence" at 4192 bytes


def _chunks(text: str):
    """Cut a file into pieces of whole lines under CHUNK_CHARS (newlines kept inside each piece)."""
    buf = []
    size = 0
    for line in text.splitlines(keepends=True):
        if size + len(line) > CHUNK_CHARS and buf:
            yield "".join(buf)
            buf, size = [], 0
        buf.append(line[:CHUNK_CHARS])
        size += len(line[:CHUNK_CHARS])
    if buf:
        yield "".join(buf)


def train_tokenizer(out_dir, vocab_size: int = 8192, max_chars: int = 12_000_000, seed: int = 0) -> Path:
    """Train the BPE tokenizer on (a deterministic sample of) the training split; returns tokenizer.model."""
    import random

    import sentencepiece as spm

    files = split_files("train")
    random.Random(seed).shuffle(files)
    pieces, total = [], 0
    for _, text in files:
        for chunk in _chunks(text):
            pieces.append(chunk)
            total += len(chunk)
        if total >= max_chars:
            break
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(pieces),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        split_by_whitespace=False,  # lets pieces like "\n    " (newline + indent) form
        allow_whitespace_only_pieces=True,
        split_digits=True,
        max_sentence_length=16384,
        pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,  # the ids every preset's config names
        control_symbols=["<mask>"],  # tokenizer.MASK_ID, the next id: a mask token that no text ever produces
        num_threads=2,
        input_sentence_size=0,
        minloglevel=2,
    )
    path = out_dir / "tokenizer.model"
    path.write_bytes(model.getvalue())
    return path


def token_stream(tokenizer, split: str) -> list[int]:
    """Every file of a split, in order, each followed by EOS: what training and evaluation read."""
    stream: list[int] = []
    for _, text in split_files(split):
        stream.extend(tokenizer.encode(text))
        stream.append(EOS_ID)
    return stream


def _umask() -> int:
    """The process's umask (read by setting it: training is single-threaded while it encodes)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def encode_split(tokenizer: SentencePieceTokenizer, split: str, cache_dir) -> np.ndarray:
    """All files of a split as one uint16 stream, each file followed by EOS. Cached by split name and by the
    tokenizer that encoded it: a cache another tokenizer wrote (a retrained one beside an old data/ folder, a
    new shipped one beside an old .gpu/) is encoded again rather than read as ids of this one."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path, stamp = cache_dir / f"{split}.npy", cache_dir / f"{split}.tokenizer.sha256"
    digest = hashlib.sha256(Path(tokenizer.path).read_bytes()).hexdigest()
    # a cache from before the stamp existed has none: it is trusted, as it always was
    if path.is_file() and (not stamp.is_file() or stamp.read_text().strip() == digest):
        try:
            return np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError):  # cut short (a run killed while an older version wrote it in
            pass  # place): "mmap length is greater than file size" ended every later run; it is encoded again
    arr = np.asarray(token_stream(tokenizer, split), dtype=np.uint16)
    try:  # written whole, then renamed: a kill mid-write leaves no cache behind; the mode open() would give
        # (mkstemp's 0600 is one user's), np.save given the open file (a name without .npy would get it added)
        replace_whole(path, lambda out: np.save(out, arr), 0o666 & ~_umask())
        stamp.write_text(digest + "\n")
    except OSError as exc:  # a full disk, a folder not writable: one line, not a traceback from inside numpy
        raise ValueError(f"the token cache {str(path)!r} could not be written: {exc.strerror or exc}") from None
    record = cache_dir / CORPUS_RECORD
    if not record.is_file():  # the cache may travel (to a GPU machine with another Python): say what it holds
        record.write_text(json.dumps(describe(), indent=1))
    return arr


class BatchSampler:
    """Random windows of `seq_len` + 1 tokens (inputs and their next-token targets) from a stream, from a seeded
    numpy RNG (resumable by step)."""

    def __init__(self, stream: np.ndarray, seq_len: int, batch_size: int, seed: int = 0):
        if len(stream) <= seq_len + 1:
            raise ValueError("token stream shorter than one training window")
        self.stream, self.seq_len, self.batch_size, self.seed = stream, seq_len, batch_size, seed

    def batch(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step])
        starts = rng.integers(0, len(self.stream) - self.seq_len - 1, size=self.batch_size)
        return np.stack([np.asarray(self.stream[s : s + self.seq_len + 1], dtype=np.int64) for s in starts])
