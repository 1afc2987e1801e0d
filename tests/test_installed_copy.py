"""What a copy installed from a wheel gets, where no checkout surrounds the package: a folder that is not there
is said so (the README's relative path from another folder read "has no config.json"), a training export
needs its --to (it wrote a site-packages/assets/default that later runs loaded as the default model), and a
report records no commit of some other repository the installation sits in."""

import subprocess

import pytest

from twotower import cli_train, run_setup, training
from twotower.checkpoint import from_backbone, from_pretrained
from twotower.cli import main as cli_main
from twotower.engine import IN_CHECKOUT
from twotower.tokenizer import load_tokenizer


@pytest.mark.parametrize("load", [from_pretrained, from_backbone, load_tokenizer])
def test_a_model_folder_that_is_not_there_is_said_so(load, tmp_path):
    with pytest.raises(ValueError, match=r"^model directory not found: .*absent$"):
        load(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        load(tmp_path / "file")


def test_this_checkout_is_one():
    assert IN_CHECKOUT  # the suite runs from a checkout: export's default --to is its assets/default


def test_an_installed_copy_exports_only_where_told(monkeypatch, capsys):
    monkeypatch.setattr(cli_train, "IN_CHECKOUT", False)
    monkeypatch.setattr(training, "export", lambda *a, **k: pytest.fail("nothing is exported"))
    assert cli_main(["train", "--stage", "export", "--out", "runs/x"]) == 2
    assert "--to DIR is needed: this installation is not a checkout" in capsys.readouterr().err
    monkeypatch.setattr(training, "export", lambda out, to: to)
    assert cli_main(["train", "--stage", "export", "--out", "runs/x", "--to", "models/mine"]) == 0


def test_git_answers_only_for_the_checkout_the_package_sits_at_the_top_of(tmp_path):
    try:
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("no git here")
    site = tmp_path / ".venv" / "site-packages"  # an installed copy inside someone's repository
    site.mkdir(parents=True)
    assert run_setup.git("rev-parse", "--show-toplevel", root=site) is None
    assert run_setup.git("rev-parse", "--show-toplevel", root=tmp_path) == str(tmp_path.resolve())
    assert run_setup.git("rev-parse", "--show-toplevel", root=tmp_path / "absent") is None
