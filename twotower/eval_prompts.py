"""The evaluation's prompts: deterministic, seeded, spread over the corpus's held-out test files.

next_line_items: a file up to a line break, and the next non-blank line as the target (bench's prompts too).
syntax_items: a file prefix that ends at a top-level line break and compiles on its own.
Given the model's tokenizer (the eval gives it), both keep only line breaks where the file's own tokens break.
load_prompt_file / prompt_ids: prompts from a user's file, and a prompt's last tokens.
"""

from __future__ import annotations

import functools
import json
import random
import sys

from .corpus import split_files
from .metrics import source_compiles
from .validation import check_encodable
from .path_checks import as_path, utf8_text

CHARS_PER_TOKEN_BOUND = 8  # cut text this many chars per wanted token before encoding (no tokenizer packs more)


@functools.lru_cache(maxsize=3)
def corpus_files(split: str = "test") -> tuple[tuple[str, str], ...]:
    return tuple(split_files(split))


def _line_offsets(text: str) -> tuple[list[str], list[int]]:
    """Lines split on '\\n' only (form feeds and '\\r' stay inside lines) and each line's start offset."""
    lines = text.split("\n")
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    return lines, offsets


def _round_robin(pools, n: int) -> list[dict]:
    """Take one item from each file's pool in turn until n items (or every pool is empty)."""
    items, pools = [], list(pools)
    while pools and len(items) < n:
        alive = []
        for pool in pools:
            item = next(pool, None)
            if item is not None:
                items.append(item)
                alive.append(pool)
                if len(items) == n:
                    break
        pools = alive
    return items


def _shuffled_files(seed: int, split: str):
    files = list(corpus_files(split))
    random.Random(seed).shuffle(files)
    return files


BOUNDARY_CHARS = 2000  # the prompt's tail the token-boundary check encodes: a merge across "\n" is local


def ends_on_a_token_boundary(encode, prompt: str, following: str) -> bool:
    """Whether the tokens of `prompt` are a prefix of the tokens of `prompt + following`: whether the file's
    own tokenization has a token boundary where the prompt stops. Where it has none (this tokenizer merges
    across line breaks: ':\n        #', '.\n\n\"\"\"'), the prompt ends inside a token the model never saw split,
    and every mode is judged on text its training never held (AR's next-line exact match was 1.3 % on such
    prompts, 10.7 % on the rest, in 500 of the eval's): such a line break is no prompt."""
    tail = prompt[-BOUNDARY_CHARS:]
    head = encode(tail)
    return encode(tail + following)[: len(head)] == head


def _on_token_boundaries(candidates, encode):
    """The (item, the line after its prompt) candidates whose prompt ends on a token boundary, as items, each with
    "passed_over": the candidates of its file skipped since the one before it; with no `encode`, every item as is.
    Lazy: a file's candidates are encoded only as far as its items are taken."""
    passed_over = 0
    for item, following in candidates:
        if encode is not None:
            if not ends_on_a_token_boundary(encode, item["prompt"], following):
                passed_over += 1
                continue
            item["passed_over"], passed_over = passed_over, 0
        yield item


def next_line_items(n: int, seed: int = 0, split: str = "test", encode=None) -> list[dict]:
    """n (prompt, target) pairs: prompt = a file up to a line break, target = the next, non-blank line.
    With `encode` (the model's tokenizer's), only line breaks where the file's tokens break too
    (ends_on_a_token_boundary); each item then counts in "passed_over" the line breaks of its file skipped before it."""
    def pool(rel, text):
        lines, offsets = _line_offsets(text)
        first = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
        candidates = [i for i in range(first + 1, len(lines)) if lines[i].strip()]
        random.Random(f"{seed}/{rel}").shuffle(candidates)
        yield from _on_token_boundaries((({"file": rel, "line": i + 1, "prompt": text[: offsets[i]],
                                          "target": lines[i]}, lines[i] + "\n") for i in candidates), encode)

    return _round_robin((pool(rel, text) for rel, text in _shuffled_files(seed, split)), n)


def held_out_prompts(encode, n: int, seed: int = 0) -> tuple[list[str], str]:
    """The default prompts of bench and sweep, with the words their reports name them by: the eval's next-line
    prompts, ending where the model's own tokens of the file break (`encode`: its tokenizer's), so a timed run
    reads no prompt cut inside a token (1 of bench's 8 was, until 2026-12-06: a healed-looking state)."""
    return ([it["prompt"] for it in next_line_items(n, seed, encode=encode)],
            f"test split, seed {seed}, ending on a token boundary")


def syntax_items(n: int, seed: int = 0, split: str = "test", encode=None) -> list[dict]:
    """n prompts that end at a line break at top level (the next line starts in column 0 with code)
    and compile on their own; `reference` holds the file's true continuation. `encode`: as next_line_items."""
    def pool(rel, text):
        lines, offsets = _line_offsets(text)
        candidates = [i for i in range(1, len(lines)) if lines[i][:1] not in ("", " ", "\t", "#", ")", "]", "}")]
        random.Random(f"{seed}/syntax/{rel}").shuffle(candidates)

        def compiling():
            for i in candidates:
                prompt = text[: offsets[i]]
                # the check the continuation is judged by when the file ends (metrics.syntax_ok): a prefix inside a
                # docstring at column 0 fails it, and so does one only the compiler refuses (`return` outside a
                # function), which ast.parse, the check here before 2026-12-06, let through (the 100 syntax prompts
                # of seeds 0, 1 and 2 are the same under either check)
                if prompt.strip() and source_compiles(prompt):
                    item = {"file": rel, "line": i + 1, "prompt": prompt, "reference": text[offsets[i]:]}
                    yield item, lines[i] + "\n"

        yield from _on_token_boundaries(compiling(), encode)

    return _round_robin((pool(rel, text) for rel, text in _shuffled_files(seed, split)), n)


def load_prompt_file(path, name: str = "--prompts") -> list[str]:
    """Prompts from a file: JSONL (.jsonl / .json: one JSON string or {"prompt": ...} per line, so a
    prompt may hold newlines) or plain text (one prompt per non-blank line). A pipe is a file too
    (`--prompts <(grep ...)`); the path is checked as every path flag's is (path_checks.as_path)."""
    path = as_path(name, path, "file")  # empty, a quoted ~, a name too long: as --out and --model say them
    if path.is_dir():
        raise ValueError(f"prompt file {path} is a folder; give a file")
    if not path.exists():
        raise ValueError(f"prompt file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"prompt file {path} cannot be read: {exc.strerror or exc}") from None
    text = utf8_text(data, f"prompt file {path}")
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if path.suffix.lower() in (".jsonl", ".json"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            prompt = record.get("prompt", record.get("text")) if isinstance(record, dict) else record
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError(f"{path}:{number}: expected a JSON string or an object with a non-empty 'prompt'")
            check_encodable(prompt, f"{path}:{number}: the prompt")
            prompts.append(prompt)
        else:
            prompts.append(line)
    if not prompts:
        raise ValueError(f"no prompts in {path}")
    return prompts


def prompt_ids(engine, text: str, max_tokens: int) -> list[int]:
    """The last `max_tokens` tokens of `text` (left truncation keeps the part next to the completion)."""
    ids = engine.tokenizer.encode(text[-max_tokens * CHARS_PER_TOKEN_BOUND:])[-max_tokens:]
    if not ids:
        raise ValueError(f"a prompt encodes to no tokens: {text[:40]!r}")
    return ids


def split_note(flag: str, asked: int, held: int, kind: str = "") -> str | None:
    """The note of bench, eval and sweep where a count flag asked for more prompts than the test split holds: all of
    them run, which the count alone hid. kind: eval's task ("next-line ")."""
    if held >= asked:
        return None
    return (f"note: the test split holds {held:,} {kind}prompt{'' if held == 1 else 's'}: all of them run "
            f"({flag} {asked:,} asked for more)")


def held_out_prompts_said(encode, n_prompts: int, seed: int) -> tuple[list[str], str]:
    """held_out_prompts for bench's and sweep's --n-prompts, with split_note on stderr where the split holds fewer."""
    texts, source = held_out_prompts(encode, n_prompts, seed)
    note = split_note("--n-prompts", n_prompts, len(texts))
    if note:
        print(note, file=sys.stderr)
    return texts, source
