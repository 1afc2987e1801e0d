"""What a run writes at its end: whole or not at all (a kill mid-write left a cut-off file where the last whole one
had been), in place where the path is not a plain file of its own, and kept when its reader has gone."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from twotower.path_checks import write_text_file


def test_a_report_replaces_the_old_one_whole_and_leaves_no_part_file(tmp_path):
    out = tmp_path / "report.md"
    out.write_text("old")
    write_text_file("--out", out, "new report")
    assert out.read_text() == "new report" and sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_a_write_that_fails_keeps_the_old_file_and_says_why(tmp_path, monkeypatch):
    out = tmp_path / "sweep.csv"
    out.write_text("the last whole sweep")

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(ValueError, match="could not be written: No space left on device"):
        write_text_file("--out-dir's file", out, "x" * 1000)
    assert out.read_text() == "the last whole sweep" and sorted(p.name for p in tmp_path.iterdir()) == ["sweep.csv"]


def test_a_link_or_a_device_is_written_in_place(tmp_path):
    target = tmp_path / "real.md"
    target.write_text("old")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    write_text_file("--out", link, "through the link")
    assert link.is_symlink() and target.read_text() == "through the link"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, as --out /dev/stdout into a pipe has one
    try:
        write_text_file("--out", fifo, "into the pipe")
        assert os.read(reader, 100) == b"into the pipe" and stat.S_ISFIFO(os.stat(fifo).st_mode)
    finally:
        os.close(reader)


def test_a_token_cache_cut_short_is_encoded_again(tmp_path, monkeypatch):
    """A first `train` killed while the cache was written left a short train.npy with no stamp, which every later
    run trusted: "mmap length is greater than file size". Now it is written whole, and a broken one re-encoded."""
    from twotower import data
    from twotower.tokenizer import SentencePieceTokenizer

    tokenizer = SentencePieceTokenizer(os.path.join(os.path.dirname(__file__), "..", "assets/default/tokenizer.model"))
    whole = np.arange(5, 50_000, dtype=np.uint16)
    cache = tmp_path / "data"
    cache.mkdir()
    with open(cache / "train.npy", "wb") as handle:
        np.save(handle, whole)
    (cache / "train.npy").write_bytes((cache / "train.npy").read_bytes()[:5000])  # cut short, no stamp
    calls = []
    monkeypatch.setattr(data, "token_stream", lambda tok, split: calls.append(split) or [7, 8, 9])
    assert list(data.encode_split(tokenizer, "train", cache)) == [7, 8, 9] and calls == ["train"]
    assert list(data.encode_split(tokenizer, "train", cache)) == [7, 8, 9] and calls == ["train"]  # cached now
    assert not [p for p in cache.iterdir() if p.name.endswith(".partial")]


def test_a_report_keeps_its_permissions_its_hard_links_and_a_long_name(tmp_path):
    """The rename gave a 0600 report 0644 and left a hard link's other name on the old text; its fixed temporary
    name (nine characters longer) failed a 250-character name that --out had accepted, and two runs writing the
    same report renamed each other's file away (ENOENT)."""
    private = tmp_path / "private.md"
    private.write_text("old")
    private.chmod(0o600)
    write_text_file("--out", private, "new")
    assert private.read_text() == "new" and stat.S_IMODE(private.stat().st_mode) == 0o600
    linked, other = tmp_path / "linked.md", tmp_path / "other.md"
    linked.write_text("old")
    os.link(linked, other)
    write_text_file("--out", linked, "both names")
    assert other.read_text() == "both names"
    long_name = tmp_path / ("r" * 250 + ".md")
    for text in ("first", "second"):  # new, then over the old one
        write_text_file("--out", long_name, text)
    assert long_name.read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")) == []


def test_a_report_that_cannot_be_replaced_is_written_in_place(tmp_path, monkeypatch):
    """Another user's writable report in a sticky folder (/tmp): the rename is refused (EPERM) where a write in
    place is not; it failed the run's end."""
    out = tmp_path / "theirs.md"
    out.write_text("old")

    def refused(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "replace", refused)
    write_text_file("--out", out, "new")
    assert out.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["theirs.md"]


def test_the_token_cache_is_readable_as_a_file_opened_plainly_is(tmp_path, monkeypatch):
    """mkstemp's files are 0600: a cache shared or carried between users could not be read by the others."""
    from twotower import data
    from twotower.tokenizer import SentencePieceTokenizer

    tokenizer = SentencePieceTokenizer(os.path.join(os.path.dirname(__file__), "..", "assets/default/tokenizer.model"))
    monkeypatch.setattr(data, "token_stream", lambda tok, split: [7, 8, 9])
    data.encode_split(tokenizer, "validation", tmp_path)
    (tmp_path / "plain").write_text("x")
    assert stat.S_IMODE((tmp_path / "validation.npy").stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


@pytest.fixture(scope="module")
def model_copy(tmp_path_factory):
    """A copy of the shipped model (a copy: a test that failed to refuse would write into it)."""
    import shutil

    from twotower.engine import default_model_dir

    return Path(shutil.copytree(default_model_dir(), tmp_path_factory.mktemp("copy") / "model"))


@pytest.mark.parametrize("argv", [
    ["generate", "--trace", "{m}/model.safetensors", "x"],
    ["generate", "--trace", "{m}/../model/tokenizer.model", "x"],
    ["bench", "--out", "{m}/config.json"],
    ["eval", "--out", "{m}/README.md"],
    ["generate", "--trace", "{m}/../weights_link", "x"],  # a link to the weights, beside the folder
])
def test_an_output_over_a_file_of_the_model_folder_is_refused_before_the_run(model_copy, argv, capsys):
    """generate --trace model/model.safetensors put a 10 KB trace in place of the weights; bench / eval --out wrote
    their table over the config or the model card: each is refused, with nothing written."""
    from twotower.cli import main

    before = {f.name: f.read_bytes() for f in model_copy.iterdir()}
    argv = [a.replace("{m}", str(model_copy)) for a in argv]
    link = model_copy.parent / "weights_link"
    if not link.is_symlink():
        link.symlink_to(model_copy / "model.safetensors")
    assert main([argv[0], "--model", str(model_copy), *argv[1:]]) == 2
    assert "is a file of the model folder this run loads" in capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in model_copy.iterdir()} == before


def test_a_report_of_its_own_beside_the_model_is_written(model_copy, capsys):
    """A new file in the model folder (an eval's report next to the model it measured) is no input: written, and
    written again by the next run."""
    from twotower.cli import main

    out = model_copy / "eval.md"
    argv = ["eval", "--model", str(model_copy), "--modes", "ar", "--n-prompts", "1", "--syntax-prompts", "1",
            "--next-line-tokens", "2", "--syntax-tokens", "2", "--out", str(out)]
    assert main(argv) == 0 and main(argv) == 0 and out.read_text().startswith("## Quality on the test split")
    out.unlink()


def test_an_output_over_the_prompt_file_is_refused_and_a_preset_has_no_model_folder(tmp_path, capsys):
    from twotower.cli import main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("import os\n")
    argv = ["bench", "--preset", "tiny", "--prompts", str(prompts), "--modes", "ar", "--repeats", "1",
            "--max-new-tokens", "2"]
    assert main(argv + ["--out", str(tmp_path / "." / "prompts.txt")]) == 2
    assert "is the --prompts file this run reads" in capsys.readouterr().err and prompts.read_text() == "import os\n"
    assert main(argv + ["--out", str(tmp_path / "bench.md")]) == 0  # a random preset loads no folder
    assert (tmp_path / "bench.md").exists()


@pytest.mark.parametrize("argv, kind", [
    (["bench", "--modes", "ar", "--n-prompts", "1", "--repeats", "1", "--max-new-tokens", "2", "--out"], "a bench report"),
    (["eval", "--modes", "ar", "--n-prompts", "1", "--syntax-prompts", "1", "--next-line-tokens", "2",
      "--syntax-tokens", "2", "--out"], "an eval report"),
    (["generate", "--max-new-tokens", "2", "x", "--trace"], "a run's trace"),
])
def test_a_file_of_something_else_is_not_written_over(tmp_path, capsys, argv, kind):
    """`bench --out README.md` replaced a project's README with a throughput table, exit 0, without a word: a file
    that exists is written over only if it is what the flag writes (an earlier run's), or empty."""
    from twotower.cli import main

    readme = tmp_path / "README.md"
    readme.write_text("# My project\n")
    assert main([argv[0], "--preset", "tiny", *argv[1:], str(readme)]) == 2
    err = capsys.readouterr().err
    assert f"exists and is not {kind}: the run would write over it; give another path, or remove that file first" in err
    assert readme.read_text() == "# My project\n" and err.count("\n") == 1
    # its own kind, written again; an empty file too
    out = tmp_path / "out"
    out.write_text("")
    assert main([argv[0], "--preset", "tiny", *argv[1:], str(out)]) == 0
    assert main([argv[0], "--preset", "tiny", *argv[1:], str(out)]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("argv", [
    ["bench", "--modes", "ar", "--n-prompts", "1", "--repeats", "1", "--max-new-tokens", "2"],
    ["eval", "--modes", "ar", "--n-prompts", "1", "--syntax-prompts", "1", "--next-line-tokens", "2",
     "--syntax-tokens", "2"],
], ids=["bench", "eval"])
def test_a_json_out_file_gets_the_json_and_a_saved_json_report_is_written_over(tmp_path, capsys, argv):
    """`--json --out r.json` wrote the markdown table into r.json, and a report saved with `--json > r.json` was
    refused as --out ("exists and is not a bench report"). Any other name keeps the markdown (--json --out eval.md:
    the JSON printed, the table kept for people)."""
    import json

    from twotower.cli import main

    out = tmp_path / "r.json"
    assert main([argv[0], "--preset", "tiny", *argv[1:], "--json", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert json.loads(out.read_text()) == json.loads(printed)
    out.write_text(json.dumps(json.loads(printed), separators=(",", ":")))  # saved another way: still a report
    assert main([argv[0], "--preset", "tiny", *argv[1:], "--out", str(out)]) == 0
    assert json.loads(out.read_text())["command"].endswith(" --out " + str(out))  # by its name, --json or not
    table = tmp_path / "r.md"
    assert main([argv[0], "--preset", "tiny", *argv[1:], "--json", "--out", str(table)]) == 0
    assert table.read_text().startswith("## ")
    other = tmp_path / "other.json"
    other.write_text('{"command": "twotower sweep"}')  # another command's JSON is no report of this one
    assert main([argv[0], "--preset", "tiny", *argv[1:], "--json", "--out", str(other)]) == 2
    assert "exists and is not" in capsys.readouterr().err


def test_a_trace_rewritten_in_another_json_spacing_is_still_a_trace(tmp_path, capsys):
    """`python -m json.tool run.json > p.json` indents the trace: the app's Open reads it, and --trace writes over
    it as over any trace (a byte-prefix test refused it)."""
    import json

    from twotower.cli import main

    trace = tmp_path / "run.json"
    assert main(["generate", "--preset", "tiny", "--max-new-tokens", "2", "--trace", str(trace), "x"]) == 0
    for spacing in ({"indent": 2}, {"separators": (",", ":")}):
        again = tmp_path / "again.json"
        again.write_text(json.dumps(json.loads(trace.read_text()), **spacing))
        assert main(["generate", "--preset", "tiny", "--max-new-tokens", "2", "--trace", str(again), "x"]) == 0
    capsys.readouterr()


def test_a_trace_to_standard_output_is_refused_by_name(tmp_path, capsys, monkeypatch):
    """`--trace -` wrote a file named "-" into the current folder (for the prompt, "-" is standard input)."""
    from twotower.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["generate", "--preset", "tiny", "--trace", "-", "x"]) == 2
    assert "--trace - : standard output holds the completion; give the trace a file name" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [
    ["bench", "--modes", "ar", "--n-prompts", "1", "--repeats", "1", "--max-new-tokens", "2", "--out", "{d}/out.md"],
    ["generate", "--max-new-tokens", "4", "--trace", "{d}/out.json", "x"],
    ["generate", "--json", "--max-new-tokens", "4", "--trace", "{d}/out.json", "x"],
    ["eval", "--modes", "ar", "--n-prompts", "1", "--syntax-prompts", "1", "--next-line-tokens", "2", "--syntax-tokens",
     "2", "--out", "{d}/out.md"],
    ["sweep", "--n-prompts", "1", "--gammas", "0.5", "--block-sizes", "4", "--max-new-tokens", "2", "--repeats", "1",
     "--out-dir", "{d}/sweep"],
])
def test_stdout_that_fails_otherwise_than_a_closed_pipe_is_said_and_the_files_are_written(tmp_path, command):
    """A full disk under `> file` (here /dev/full) was a traceback that lost the --out file or the trace."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    argv = [a.replace("{d}", str(tmp_path)) for a in command]
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "twotower.cli", argv[0], "--preset", "tiny", *argv[1:]],
                              stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().endswith("error: standard output could not be written (No space left on device)")
    assert [p.name for p in tmp_path.iterdir()] == [argv[-2 if argv[0] == "generate" else -1].split("/")[-1]]
    if argv[0] == "sweep":
        assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["sweep.csv", "sweep.html"]


def test_generate_with_stdout_closed_says_nothing_and_fails_nothing(tmp_path):
    """`generate --json x >&-`: Python's sys.stdout is None; print() writes nowhere, and so does generate's own
    writer now (an AttributeError traceback)."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    for flag in ("--json", "--no-eos"):
        done = subprocess.run(["bash", "-c", f'"{sys.executable}" -m twotower.cli generate --preset tiny '
                                             f'--max-new-tokens 4 {flag} x >&-'],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
