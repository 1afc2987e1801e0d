"""The offline corpus: the running interpreter's own standard-library sources, test suite included.

Files are read in sorted order and assigned to train / validation / test by a hash of their path
relative to the library root, so a file never straddles splits and the split does not depend on which
other files exist. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from pathlib import Path

SPLITS = ("train", "validation", "test")
VALID_PERCENT, TEST_PERCENT = 2, 2  # of files, by path hash
MAX_FILE_BYTES = 400_000  # a few generated giants (e.g. test data tables) would dominate the corpus


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def split_of(relpath: str) -> str:
    """Deterministic split of one file from its relative path (posix separators)."""
    bucket = int(hashlib.sha256(relpath.encode("utf-8")).hexdigest()[:8], 16) % 100
    if bucket < VALID_PERCENT:
        return "validation"
    if bucket < VALID_PERCENT + TEST_PERCENT:
        return "test"
    return "train"


def list_files(root: Path | None = None) -> list[str]:
    """Sorted relative paths of every .py file under the stdlib root (site-packages excluded)."""
    root = root or stdlib_root()
    paths = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("site-packages/", "dist-packages/")) or "/site-packages/" in rel:
            continue
        if path.is_file() and path.stat().st_size <= MAX_FILE_BYTES:
            paths.append(rel)
    return sorted(paths)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # a few test files are deliberately not UTF-8


def split_files(split: str, root: Path | None = None) -> list[tuple[str, str]]:
    """(relative path, text) of every file in one split, in sorted path order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    root = root or stdlib_root()
    out = []
    for rel in list_files(root):
        if split_of(rel) == split:
            text = read_text(root / rel)
            if text:
                out.append((rel, text))
    return out


def describe(root: Path | None = None) -> dict:
    """What the corpus was, recorded with every checkpoint trained on it."""
    root = root or stdlib_root()
    files = list_files(root)
    counts = {s: 0 for s in SPLITS}
    for rel in files:
        counts[split_of(rel)] += 1
    return {
        "python_version": sys.version.split()[0],
        "stdlib_root": str(root),
        "files": len(files),
        "files_per_split": counts,
        "split_rule": f"sha256(relpath) % 100: <{VALID_PERCENT} validation, <{VALID_PERCENT + TEST_PERCENT} test, else train",
    }
