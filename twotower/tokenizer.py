"""Tokenizers shared by the engine, the CLI and the UI.

Special ids are fixed across this project's two tokenizers so configs agree: 0 pad, 1 bos, 2 eos, 3 unk,
4 mask. `SentencePieceTokenizer` wraps the trained BPE model shipped with a checkpoint; `ByteTokenizer` maps
bytes to ids 5..260 so a random `tiny` model (vocab 261) can read and write any text; `HFTokenizer` reads a
Hugging Face `tokenizer.json` (the release's), its special ids from the model's config.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .validation import check_encodable, check_int
from .checkpoint_files import broken_link
from .path_checks import check_model_dir

PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID = 0, 1, 2, 3, 4
N_SPECIAL = 5
MASK_TEXT = "<mask>"
SPECIAL_PIECES = ["<pad>", "<s>", "</s>", "<unk>", MASK_TEXT]  # ids 0-4 in a sentencepiece model of this project
SPACE_MARK = "\u2581"  # sentencepiece's whitespace symbol
TOKENIZER_FILE = "tokenizer.model"
HF_TOKENIZER_FILE = "tokenizer.json"


def text_to_encode(text) -> str:
    """encode's argument: text. None, bytes or ids were sentencepiece's or Python's TypeError from inside."""
    if not isinstance(text, str):
        raise ValueError(f"encode takes text (str), got {type(text).__name__}")
    check_encodable(text, "the text to encode")  # a lone surrogate was pybind's "Unable to cast ..." RuntimeError
    return text


def ids_to_decode(ids) -> list[int]:
    """decode's argument as Python ints: a list, a tensor or numpy row. What is not one row of ids is refused
    by name (a batch's result.new_tokens was int()'s TypeError; int() read 5.7 as id 5 and "7" as id 7)."""
    ids = ids.tolist() if hasattr(ids, "tolist") else ids  # a tensor / numpy row: Python ints
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise ValueError(f"decode takes a sequence of token ids, got {type(ids).__name__}")
    ids = list(ids)
    if all(type(i) is int for i in ids):  # a tensor's tolist(), a list of ids: nothing to check per id
        return ids
    if any(isinstance(i, (list, tuple)) or getattr(i, "ndim", 0) for i in ids):  # rows of a batch
        raise ValueError("decode takes one row of token ids at a time: decode(result.new_tokens[0]), not the batch")
    return [check_int("a token id", i.item() if hasattr(i, "item") else i, minimum=None) for i in ids]


class ByteTokenizer:
    vocab_size = N_SPECIAL + 256
    pad_token_id, bos_token_id, eos_token_id, unk_token_id, mask_token_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID

    def encode(self, text: str) -> list[int]:
        return [b + N_SPECIAL for b in text_to_encode(text).encode("utf-8")]

    def decode(self, ids) -> str:
        return bytes(i - N_SPECIAL for i in ids_to_decode(ids)
                     if N_SPECIAL <= i < self.vocab_size).decode("utf-8", errors="replace")

    def piece(self, token_id: int) -> str:
        """Display text of one token (specials by name)."""
        return _special_name(token_id) or _no_piece(token_id, self.vocab_size) or self.decode([token_id])


class ForeignTokenizer(ValueError):
    """A sentencepiece model that reads but is not one of this project's (its special ids are other pieces)."""


class SentencePieceTokenizer:
    def __init__(self, model_file):
        import sentencepiece as spm

        self.path = Path(model_file)
        if not self.path.is_file():
            raise ValueError(f"tokenizer file not found: {self.path}")
        if self.path.stat().st_size == 0:  # sentencepiece: "INTERNAL: unk is not defined."
            raise ValueError(f"cannot read the tokenizer {self.path}: the file is empty")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(self.path))
        except (RuntimeError, OSError) as exc:  # "could not parse ModelProto": not a sentencepiece model
            raise ValueError(f"cannot read the tokenizer {self.path}: {exc}") from None
        self.vocab_size = self.sp.get_piece_size()
        # ids 0-4 are fixed (the mask id among them): a sentencepiece model trained elsewhere reads, and its ids then
        # mean other tokens to the model (its mask id an ordinary piece): nonsense without an error
        pieces = [self.sp.id_to_piece(i) if i < self.vocab_size else None for i in range(N_SPECIAL)]
        if pieces != SPECIAL_PIECES:
            raise ForeignTokenizer(f"the tokenizer {self.path} is not one of this project's: its ids "
                                   f"0-{N_SPECIAL - 1} are {pieces}, where this project's tokenizers have "
                                   f"{SPECIAL_PIECES}")
        self.pad_token_id, self.bos_token_id, self.eos_token_id = PAD_ID, BOS_ID, EOS_ID
        self.unk_token_id, self.mask_token_id = UNK_ID, MASK_ID
        self._space_mark_ids = [self.sp.piece_to_id(f"<0x{b:02X}>") for b in SPACE_MARK.encode("utf-8")]

    def encode(self, text: str) -> list[int]:
        text = text_to_encode(text)
        if MASK_TEXT not in text and SPACE_MARK not in text:
            return self.sp.encode(text, out_type=int)
        # Two literals sentencepiece cannot round-trip on its own: "<mask>" (a model trained with it as a
        # user-defined piece would turn typed text into the mask id: spell it "<" + "mask>") and "▁"
        # (its internal space mark, decoded as a space: spell it with its UTF-8 byte-fallback pieces).
        ids: list[int] = []
        for i, part in enumerate(text.split(MASK_TEXT)):
            if i:
                ids += self.sp.encode("<", out_type=int) + self.sp.encode(MASK_TEXT[1:], out_type=int)
            for j, piece in enumerate(part.split(SPACE_MARK)):
                if j:
                    ids += self._space_mark_ids
                ids += self.sp.encode(piece, out_type=int)
        return ids

    def decode(self, ids) -> str:
        # ids past the tokenizer (a model head wider than its tokenizer) are dropped, as the other two
        # tokenizers do, instead of sentencepiece's IndexError ending the run that produced them
        return self.sp.decode([i for i in ids_to_decode(ids) if N_SPECIAL <= i < self.vocab_size])

    def piece(self, token_id: int) -> str:
        return _special_name(token_id) or _no_piece(token_id, self.vocab_size) or self.sp.decode([int(token_id)])


def _special_name(token_id: int) -> str | None:
    return {PAD_ID: "<pad>", BOS_ID: "<s>", EOS_ID: "</s>", UNK_ID: "<unk>", MASK_ID: "<mask>"}.get(int(token_id))


def _no_piece(token_id: int, vocab_size: int) -> str | None:
    """How the board shows an id the tokenizer has no piece for (the model's head may be wider)."""
    return f"<id {int(token_id)}: no piece>" if not 0 <= int(token_id) < vocab_size else None


class HFTokenizer:
    """A checkpoint's Hugging Face `tokenizer.json` (the release ships one, not a sentencepiece model), read by
    transformers' fast tokenizer. Special ids come from the model's config: the release's tokenizer has no
    mask piece, its mask id is `config.mask_token_id`."""

    def __init__(self, path, config):
        from transformers import PreTrainedTokenizerFast

        self.path = Path(path)
        try:
            # split_special_tokens: typed text such as "</s>" or "<mask>" stays text, never a control id
            self.hf = PreTrainedTokenizerFast(tokenizer_file=str(self.path), split_special_tokens=True)
        except Exception as exc:  # the tokenizers library raises its own exception types
            problem = _tokenizer_json_problem(self.path) or " ".join(str(exc).split())
            raise ValueError(f"cannot read the tokenizer {self.path}: {problem}") from None
        self.vocab_size = len(self.hf)
        self.pad_token_id, self.bos_token_id = config.pad_token_id, config.bos_token_id
        self.eos_token_id, self.mask_token_id = config.eos_token_id, config.mask_token_id
        if isinstance(self.eos_token_id, (list, tuple)):  # transformers' "stop at any of these"; runs stop at one id
            if len(self.eos_token_id) != 1:  # was "eos_token_id must be an integer" at the first run, as if typed
                raise ValueError(f"{self.path.parent / 'config.json'} gives eos_token_id as a list "
                                 f"{list(self.eos_token_id)}; the engine stops at one id: keep the one that ends text")
            self.eos_token_id = self.eos_token_id[0]
        self.unk_token_id = self.hf.unk_token_id

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text_to_encode(text), add_special_tokens=False)

    def decode(self, ids) -> str:
        # ids with no piece are dropped, as the other two tokenizers do (a negative one overflowed in tokenizers)
        return self.hf.decode([i for i in ids_to_decode(ids) if 0 <= i < self.vocab_size], skip_special_tokens=True)

    def piece(self, token_id: int) -> str:
        token_id = int(token_id)
        if token_id in self.hf.all_special_ids or token_id == self.mask_token_id:
            return self.hf.convert_ids_to_tokens(token_id)
        return _no_piece(token_id, self.vocab_size) or self.hf.decode([token_id])


def _tokenizer_json_problem(path: Path) -> str | None:
    """What is wrong with a tokenizer.json the tokenizers library refused, in words where the file shows it (the
    library says "EOF while parsing a value at line 1 column 0" of an empty file, "expected `,` or `}`" of a
    valid JSON object of another kind); None where it does not (the library's own text is then used)."""
    from .checkpoint_files import read_json_value

    try:
        raw = read_json_value(path)
    except ValueError as exc:
        return str(exc)
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
        return "JSON, but not a Hugging Face tokenizer (it has no 'model' object)"
    return None


def find_tokenizer_file(model_dir) -> Path:
    """The tokenizer beside a checkpoint: sentencepiece's `tokenizer.model`, else a Hugging Face
    `tokenizer.json`. A folder with neither is refused (before any weight is read): byte ids fed to a model
    trained on other tokens would generate nonsense without an error."""
    for name in (TOKENIZER_FILE, HF_TOKENIZER_FILE):
        if (Path(model_dir) / name).is_file():
            return Path(model_dir) / name
        if (Path(model_dir) / name).is_dir():
            raise ValueError(f"{Path(model_dir) / name} is a folder, not a tokenizer file")
    for name in (TOKENIZER_FILE, HF_TOKENIZER_FILE):
        link = broken_link(Path(model_dir) / name)
        if link:
            raise ValueError(link)
    raise ValueError(f"no tokenizer in {model_dir}: expected {TOKENIZER_FILE} (sentencepiece, as this project "
                     f"trains) or {HF_TOKENIZER_FILE} (Hugging Face, as the release ships) beside the weights")


def load_tokenizer(model_dir=None, config=None):
    """The checkpoint's tokenizer (find_tokenizer_file), or bytes for a random preset (model_dir None).
    config: the model's, for a tokenizer.json's special ids (read from model_dir's config.json when None)."""
    if model_dir is None:
        if config is not None and config.vocab_size < ByteTokenizer.vocab_size:
            raise ValueError(f"vocab {config.vocab_size} is too small for the byte tokenizer")
        return ByteTokenizer()
    # load_tokenizer(5) was pathlib's TypeError; a missing folder read "no tokenizer in" it
    model_dir = check_model_dir(model_dir, "the tokenizer's folder")
    path = find_tokenizer_file(model_dir)
    if path.name == TOKENIZER_FILE:
        try:
            return SentencePieceTokenizer(path)
        except ForeignTokenizer:
            # another model's tokenizer.model left beside the release's tokenizer.json (which it shadowed, so
            # the checkpoint was refused): the json is the checkpoint's own; without one the refusal stands (as it
            # does for a damaged tokenizer.model, which may be the checkpoint's own)
            path = Path(model_dir) / HF_TOKENIZER_FILE
            if not path.is_file():
                raise
    if config is None:
        from .checkpoint import load_config

        config = load_config(model_dir)
    return HFTokenizer(path, config)
