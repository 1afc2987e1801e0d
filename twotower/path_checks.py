"""Checks on the files and folders a run reads and writes, shared by the CLI, the API and the UI: a bad path is a
one-line error before the run starts (not after minutes of measurement), and a report is written whole or not at
all, never over a file of another kind or one of the run's own inputs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def check_output_file(name: str, path) -> Path | None:
    """A file a run writes at its end, checked before the run starts, so that a typo in the path does not
    throw away minutes of measurement: its folder must exist and be writable, and it must not be a folder."""
    if path is None:
        return None
    if isinstance(path, str) and path.endswith(("/", os.sep)):  # pathlib drops the slash: "new/" was a file "new"
        raise ValueError(f"{name} {path!r} ends with a slash; give a file name")
    path = as_path(name, path, "file")  # "~/runs/x.json" quoted is the home folder's, as --model's is
    if path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a folder; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if folder.exists() and not folder.is_dir():  # was "does not exist" of a file in the way
        raise ValueError(f"{name} {str(path)!r}: {str(folder)!r} is a file, not a folder")
    if not folder.is_dir():
        raise ValueError(f"{name} {str(path)!r}: the folder {str(folder)!r} does not exist")
    # a file that exists is written in place: its own permission counts (a user's --out /dev/stdout was refused
    # for /dev's); a new one needs its folder's
    if not os.access(path if path.exists() else folder, os.W_OK):
        raise ValueError(f"{name} {str(path)!r} cannot be written here (permission denied)")
    if not path.exists():  # os.access says yes to root everywhere (/proc too): a bench's whole run was measured
        try:  # before its --out was refused; a file made and removed in the folder tells
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise ValueError(f"{name} {str(path)!r} cannot be written here ({exc.strerror or exc})") from None
    return path


# what a model folder holds besides its weights (*.safetensors): its config, tokenizer, card and training records
MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.model",
               "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "README.md", "training_info.json",
               "inherited_info.json", "train_context_log.jsonl", "train_denoiser_log.jsonl"}


def check_apart_from_inputs(name: str, path: Path | None, model_dir=None, prompts=None) -> None:
    """An output file the run would write over one of its own inputs, refused before it runs: a file of the model
    folder it loads (`generate --trace model/model.safetensors` put a 10 KB trace in place of the weights,
    `--out model/README.md` over the model card) or its --prompts file. Another file in the model folder (an
    eval's report beside the model, written there before or not) is no input: it is written."""
    if path is None:
        return
    named = path.expanduser()
    # the file as named, and where a link there leads (a report is written through a link: into its target); the
    # folder resolved as the OS walks it (os.path.abspath dropped "l/.." by its text, past a link `l`)
    where = {named.parent.resolve() / named.name, named.resolve()}
    model = Path(model_dir).expanduser().resolve() if model_dir is not None else None
    if model is not None and any(w.is_relative_to(model) and w.is_file() and
                                 (w.name in MODEL_FILES or w.suffix == ".safetensors") for w in where):
        raise ValueError(f"{name} {str(path)!r} is a file of the model folder this run loads ({model_dir}): the run "
                         "would write over it; give another path")
    if prompts is not None and Path(prompts).expanduser().resolve() in where:
        raise ValueError(f"{name} {str(path)!r} is the --prompts file this run reads: give another file")


def check_written_over(name: str, path: Path | None, kind: str, holds) -> None:
    """An existing file is written over only if it holds what this flag writes (`holds(head)`: whether the file's
    first 64 KB, as bytes, are such a file's), or nothing: `bench --out README.md` replaced a project's README with
    a throughput table, without a word. Not a regular file (/dev/stdout, a pipe): written as always."""
    if path is None or not path.is_file():
        return
    try:
        with open(path, "rb") as handle:
            head = handle.read(65536)
    except OSError:  # unreadable (write-only): nothing to tell it by; it is written as the flag asks
        return
    if head.strip() and not holds(head):
        raise ValueError(f"{name} {str(path)!r} exists and is not {kind}: the run would write over it; give another "
                         "path, or remove that file first")


def as_path(name: str, path, kind: str = "folder") -> Path:
    """A path given as text or a path object; anything else (a number, bytes) was pathlib's TypeError, and ""
    was the current folder: a training run, a sweep's files or a model search landed there without a word.
    kind: what the flag names, "folder" or "file" (said when it is empty)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{name} must be a path (text or a pathlib.Path), got {type(path).__name__} {path!r}")
    if isinstance(path, str) and not path.strip():
        raise ValueError(f"{name} is empty: " + ("give a file name" if kind == "file" else
                                                 "give a folder (\".\" for the current one)"))
    try:  # "~/models/x" quoted (or --model=~/x, which no shell expands) was a folder named "~" in the current one
        path = Path(path).expanduser()
    except TypeError:  # an os.PathLike whose __fspath__ gives bytes
        raise ValueError(f"{name} must be a text path, got {path!r}") from None
    try:  # a name the OS refuses outright (too long): pathlib's is_dir / exists raise for it instead of answering
        path.exists()
    except OSError as exc:
        shown = str(path) if len(str(path)) <= 80 else str(path)[:77] + "..."
        raise ValueError(f"{name} {shown!r} cannot be used: {exc.strerror or exc}") from None
    return path


def check_not_a_file(name: str, path) -> Path:
    """A folder a run will write into must not be a file already (checked before any work; nothing made)."""
    path = as_path(name, path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a file, not a folder")
    return path


def utf8_text(data: bytes, what: str) -> str:
    """Bytes read from a file or a pipe as text, or one line naming the first byte that is not UTF-8 (a Latin-1
    'é' read leniently became a lone surrogate, refused later with no word of the encoding)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def check_model_dir(path, name: str = "--model") -> Path:
    """A checkpoint folder that exists: a file given for it (a weights file, its config.json) is named as such."""
    path = as_path(name, path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} {path} is a file, not a folder (a checkpoint folder holds config.json and the weights)")
    if not path.is_dir():
        # "nvidia/Nemotron-Labs-TwoTower" is a hub name: nothing is ever downloaded, so say what --model takes
        hub = (not path.is_absolute() and len(path.parts) == 2 and not path.parts[0].startswith(".")
               and not path.parent.exists())
        hint = (": a hub name? Nothing is downloaded here; download the checkpoint and give its local folder"
                if hub else "")
        raise ValueError(f"model directory not found: {path}{hint}")
    return path


def make_output_dir(name: str, path) -> Path:
    """A folder a run writes into, made (or checked) before the run starts, for the same reason."""
    path = check_not_a_file(name, path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{name} {str(path)!r} cannot be made: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK):
        raise ValueError(f"{name} {str(path)!r} cannot be written (permission denied)")
    return path


def write_text_file(name: str, path: Path, text: str) -> None:
    """Write a run's report. Over a report already there: into a file of its own beside it, renamed over it once
    written, with its permissions (a run killed mid-write left a cut-off CSV or JSON where the last whole one had
    been). In place where there is none yet, or where renaming would change what the path is: not a plain file
    (--out /dev/stdout), a link, a file with other names (hard links), or a folder that takes no new file. A
    failure (disk full, the folder removed meanwhile) is a one-line error."""
    path = Path(path)
    try:
        if not _write_beside(path, text):
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{name} {str(path)!r} could not be written: {exc.strerror or exc}") from None


def _write_beside(path: Path, text: str) -> bool:
    """write_text_file's rename; False where it writes in place instead (nothing written yet)."""
    import stat

    try:
        old = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    if not stat.S_ISREG(old.st_mode) or old.st_nlink > 1:
        return False
    try:  # with the old file's permissions
        replace_whole(path, lambda out: out.write(text.encode("utf-8")), stat.S_IMODE(old.st_mode))
    except PermissionError:  # a folder that takes no new file, or another user's file in a sticky folder (/tmp):
        return False  # writable, not replaceable
    return True


def replace_whole(path: Path, write, mode: int) -> None:
    """Put a file at `path` whole or not at all: write(binary file) fills a temporary file of its own in the same
    folder (two writers each rename a whole one; a long name stays short), which gets `mode` (mkstemp's is 0600)
    and is renamed over `path`. What a failed write left is removed; the OSError is the caller's."""
    handle, partial = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.stem[:20]}-",
                                       suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
        os.chmod(partial, mode)
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)  # gone once renamed


def read_json(path: Path):
    """A JSON record a run reads back (training_info.json, trainer_state.json, ...): a damaged one is a
    one-line error that names the file, not a bare "Expecting value" with no file to look at."""
    import json

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}): the file is damaged") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
