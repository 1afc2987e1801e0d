"""The GPU-lease scripts, checked here without a GPU: the device call refuses to start without the carried
token streams (a clear line, exit 2, before any work), and the parts it sends back rebuild the export."""

import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*argv, cwd=ROOT, env=None):
    return subprocess.run(["bash", *argv], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def run_prepared_gpu_train(tmp_path, **env):
    """gpu_train.sh in a copy of the tree whose .gpu holds a (dummy) token stream, with `env` set."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "gpu_train.sh").write_text((ROOT / "scripts" / "gpu_train.sh").read_text())
    (tmp_path / ".gpu" / "data").mkdir(parents=True)
    (tmp_path / ".gpu" / "data" / "train.npy").write_bytes(b"")
    return run("scripts/gpu_train.sh", cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out"), **env})


def test_gpu_train_without_prepared_data_says_so(tmp_path):
    # a copy of the scripts beside an empty .gpu: the device machine when .gpu was not carried
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "gpu_train.sh").write_text((ROOT / "scripts" / "gpu_train.sh").read_text())
    result = run("scripts/gpu_train.sh", cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out")})
    assert result.returncode == 2
    assert "run scripts/gpu_prepare.sh here and carry .gpu" in result.stdout + result.stderr


def test_gpu_unpack_rebuilds_the_export_from_its_parts(tmp_path):
    export = tmp_path / "run" / "export"
    export.mkdir(parents=True)
    (export / "config.json").write_text('{"x": 1}')
    (export / "model.safetensors").write_bytes(bytes(range(256)) * 4000)  # ~1 MB, split below
    with tarfile.open(tmp_path / "export.tar", "w") as tar:
        tar.add(export, arcname="export")
    data, parts = (tmp_path / "export.tar").read_bytes(), tmp_path / "parts"
    parts.mkdir()
    for i, start in enumerate(range(0, len(data), 300_000)):  # what `split -b` writes: aa, ab, ...
        (parts / f"export.tar.part-a{'abcdefgh'[i]}").write_bytes(data[start:start + 300_000])
    dest = tmp_path / "dest"
    result = run("scripts/gpu_unpack.sh", str(parts), str(dest))
    assert result.returncode == 0, result.stderr
    assert (dest / "model.safetensors").read_bytes() == (export / "model.safetensors").read_bytes()
    assert (dest / "tokenizer.model").read_bytes() == (ROOT / "assets/default/tokenizer.model").read_bytes()
    missing = run("scripts/gpu_unpack.sh", str(tmp_path / "nothing"), str(dest))
    assert missing.returncode == 2 and "no export.tar.part-*" in missing.stdout + missing.stderr
    # a second unpack into the same folder is refused (it merged: an earlier model's files survived)
    again = run("scripts/gpu_unpack.sh", str(parts), str(dest))
    assert again.returncode == 2 and "is not empty" in again.stdout + again.stderr
    # relative paths are the caller's, not the repository root's
    relative = subprocess.run(["bash", str(ROOT / "scripts/gpu_unpack.sh"), "parts", "second"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
    assert relative.returncode == 0, relative.stderr
    assert (tmp_path / "second" / "config.json").read_text() == '{"x": 1}'


def test_gpu_train_refuses_budgets_the_call_cannot_hold(tmp_path):
    """Training minutes that leave no time for the export are refused before the smoke (once, the export came
    after the budget and nothing came back)."""
    result = run_prepared_gpu_train(tmp_path, CTX_MIN="2.5", DEN_MIN="7.5")
    assert result.returncode == 2 and "exceed the call's 590 s" in result.stdout + result.stderr


def test_gpu_train_continue_needs_an_export_to_continue(tmp_path):
    """CONTINUE=1 trains an export's denoiser on (the leases' steps add up); without one prepared it says so
    before any work instead of training a fresh denoiser the caller did not ask for."""
    result = run_prepared_gpu_train(tmp_path, CONTINUE="1", DEN_MIN="1")
    assert result.returncode == 2 and "CTX_FROM=<export> scripts/gpu_prepare.sh" in result.stdout + result.stderr


def test_gpu_train_refuses_a_distill_batches_that_is_not_whole(tmp_path):
    """bash printed "8.5: syntax error" and went on; the value failed at stage 2's start, after stage 1's minutes."""
    result = run_prepared_gpu_train(tmp_path, DISTILL_BATCHES="8.5", DEN_MIN="1")
    assert result.returncode == 2 and "DISTILL_BATCHES must be a whole number, got '8.5'" in result.stdout + result.stderr


def test_a_denoiser_stage_that_fails_after_a_save_still_exports_it(tmp_path):
    """A diverging step ends training with exit 2 (the step not taken, the last save kept); the script then ended
    before its export and the lease's work was lost. The denoiser's last save is now exported; a failure with no
    save, or in a stage that names no checkpoint, ends the script as before."""
    import subprocess

    script = (ROOT / "scripts" / "gpu_train.sh").read_text()
    body = script[script.index("past_deadline() {"):script.index("fresh() {")]
    ckpt = tmp_path / "denoiser_ckpt"

    def stage_ends(rc, *folder):
        line = f'past_deadline {rc} denoiser "its last step is exported" {" ".join(map(str, folder))}; echo went on'
        return subprocess.run(["bash", "-c", body + line], capture_output=True, text=True, timeout=30)

    assert stage_ends(2, ckpt).returncode == 2 and "went on" not in stage_ends(2, ckpt).stdout  # nothing saved
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    went = stage_ends(2, ckpt)
    assert went.returncode == 0 and "failed (2); its last save is exported" in went.stdout and "went on" in went.stdout
    assert stage_ends(2).returncode == 2  # the context stage names none
    assert "stopped at its deadline (124)" in stage_ends(124).stdout
