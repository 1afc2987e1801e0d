"""The corpus and the token streams training reads: which files, in which order, each file's end marked,
windows drawn per step, and the tokenizer trained on them."""

import numpy as np
import pytest

from twotower import corpus, data
from twotower.corpus import MAX_FILE_BYTES, list_files, split_files, split_of
from twotower.data import BatchSampler
from twotower.engine import DEFAULT_MODEL_DIR
from twotower.tokenizer import BOS_ID, EOS_ID, MASK_ID, PAD_ID, UNK_ID, SentencePieceTokenizer

SHIPPED_TOKENIZER = DEFAULT_MODEL_DIR / "tokenizer.model"


def test_list_files_is_sorted_and_leaves_out_installed_packages_and_giant_files(tmp_path):
    # the stream's order (and so every window a seed draws) follows this list; installed packages are not the
    # standard library, and a generated giant table would dominate the corpus
    for rel, size in [("zeta.py", 10), ("b/inner.py", 10), ("alpha.py", 10), ("b/a.py", 10),
                      ("limit.py", MAX_FILE_BYTES), ("giant.py", MAX_FILE_BYTES + 1), ("notes.txt", 10),
                      ("site-packages/pkg/x.py", 10), ("dist-packages/y.py", 10), ("lib/site-packages/z.py", 10)]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x" * size)
    assert list_files(tmp_path) == ["alpha.py", "b/a.py", "b/inner.py", "limit.py", "zeta.py"]


def test_split_files_reads_one_split_in_sorted_order_and_skips_unreadable_files(tmp_path):
    names = [f"m{i:03d}.py" for i in range(100)]  # 92 train, 5 validation, 3 test
    for name in reversed(names):
        (tmp_path / name).write_text(f"# {name}\n")
    (tmp_path / "latin1.py").write_bytes(b"# caf\xe9\n")  # not UTF-8: left out, not a crash
    for split in corpus.SPLITS:
        want = [(n, f"# {n}\n") for n in names if split_of(n) == split]
        assert want and split_files(split, tmp_path) == want
    assert sum(len(split_files(s, tmp_path)) for s in corpus.SPLITS) == 100
    with pytest.raises(ValueError, match="unknown split"):
        split_files("valid", tmp_path)


def test_the_token_stream_ends_every_file_with_eos(monkeypatch):
    # EOS between files: without it one file's end runs into the next file's start inside a training window
    tokenizer = SentencePieceTokenizer(SHIPPED_TOKENIZER)
    a, b = "import os\n\n\ndef main():\n    pass\n", "x = 1  # naïve\n"
    asked = []
    monkeypatch.setattr(data, "split_files", lambda split: asked.append(split) or [("a.py", a), ("b.py", b)])
    stream = data.token_stream(tokenizer, "validation")
    assert asked == ["validation"]
    assert stream == [*tokenizer.encode(a), EOS_ID, *tokenizer.encode(b), EOS_ID]


def test_batch_sampler_draws_new_windows_each_step_reproducibly_per_seed_and_step():
    # windows are seeded by (seed, step): a resume redraws exactly the windows it would have seen, and a
    # sampler that drew from the same RNG every step trained on one batch over and over
    stream = np.arange(20_000, dtype=np.uint16)  # every window is identified by its first token
    sampler = BatchSampler(stream, seq_len=16, batch_size=4, seed=0)
    first = sampler.batch(0)
    assert first.shape == (4, 17) and first.dtype == np.int64
    assert (np.diff(first, axis=1) == 1).all()  # contiguous stretches of the stream
    assert not np.array_equal(first, sampler.batch(1))
    assert len({int(sampler.batch(s)[0, 0]) for s in range(20)}) == 20
    assert np.array_equal(BatchSampler(stream, 16, 4, seed=0).batch(7), sampler.batch(7))
    assert not np.array_equal(BatchSampler(stream, 16, 4, seed=1).batch(0), first)
    with pytest.raises(ValueError, match="shorter than one training window"):
        BatchSampler(stream[:17], 16, 4)


def test_a_trained_tokenizer_has_the_fixed_special_ids_and_round_trips_text_it_never_saw(tmp_path, monkeypatch):
    # the project's special ids (0 pad, 1 bos, 2 eos, 3 unk, 4 mask) are baked into every config; byte fallback
    # lets any text through (without it unseen characters decode as " ⁇ "), identity normalisation keeps code's
    # whitespace as it is. A small vocabulary on a small sample: a fraction of a second.
    import random

    rng = random.Random(0)  # code-like lines of made-up names: merges enough for the vocabulary without bytes
    names = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 9))) for _ in range(300)]
    sample = "".join(f"def {rng.choice(names)}({rng.choice(names)}):\n    return {rng.choice(names)} + {i}\n\n"
                     for i in range(400)) + "class A:\n\tpass  # comment\n"
    asked = []
    monkeypatch.setattr(data, "split_files", lambda split: asked.append(split) or [("a.py", sample)])
    tokenizer = SentencePieceTokenizer(data.train_tokenizer(tmp_path / "tok", vocab_size=320))
    assert asked == ["train"] and tokenizer.vocab_size == 320
    pieces = [tokenizer.sp.id_to_piece(i) for i in (PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID)]
    assert pieces == ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]
    for text in ("漢字 ∮ 🙂", "  two leading spaces,\r\n\ttab and trailing  \n", "<mask> typed"):
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text and UNK_ID not in ids and MASK_ID not in ids
