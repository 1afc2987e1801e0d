"""Self-distillation in stage 2: it starts at its share of the run, its windows are generated ahead (equal to
distilling step by step) and are the windows the distilling steps train on."""

import pytest
import torch

from tiny_models import tiny_training_run
from twotower import build_model


def test_distillation_starts_at_its_share_of_the_run(tmp_path, monkeypatch):
    import json

    training, run = tiny_training_run(monkeypatch, tmp_path)
    training.run_stage("context", run, profile="test", steps=2)
    training.run_stage("denoiser", run, profile="test", steps=6, distill_share=0.5, distill_from=0.5)
    log = [json.loads(line) for line in (run / "denoiser_log.jsonl").read_text().splitlines()]
    assert [r.get("distill_share") for r in log] == [0.0, 0.0, 0.0, None, None, None]
    # a token cache that travelled from another interpreter: the export names the corpus it holds
    corpus = {"python_version": "3.0.0", "files": 7, "files_per_split": {}, "split_rule": "test"}
    (run / "data").mkdir(exist_ok=True)
    (run / "data" / "corpus.json").write_text(json.dumps(corpus))
    exported = training.export(run, tmp_path / "export")
    assert json.loads((exported / "training_info.json").read_text())["corpus"] == corpus
    with pytest.raises(ValueError, match="already at step 6: --steps 6 leaves nothing to train"):
        training.run_stage("denoiser", run, profile="test", steps=6, resume=True)  # was: rc 0, an empty record
    # a run folder without its tokenizer: refused before the destination is touched (it was left weights only)
    (run / "tokenizer.model").unlink()
    with pytest.raises(ValueError, match="has no tokenizer.model"):
        training.export(run, tmp_path / "second")
    assert not (tmp_path / "second").exists()


def test_distilling_ahead_equals_distilling_step_by_step():
    """DistillAhead (K steps' windows in one AR run) against its twin, self_distill on each step's window:
    the context tower is frozen in stage 2, so the targets are the same; the undistilled rows are untouched."""
    from twotower.distill import DistillAhead, self_distill

    from twotower import generate_ar

    model = build_model("tiny", seed=3).train()
    windows = {s: torch.randint(5, 261, (4, 20), generator=torch.Generator().manual_seed(s)) for s in range(5)}
    # what a distilled row is, apart from both twins: the window's own prefix, then the context tower's greedy
    # continuation of that prefix (both twins share self_distill: a wrong prefix there fooled the comparison)
    greedy = {s: generate_ar(model.eval(), windows[s][:2, :8], max_new_tokens=12).sequences for s in range(5)}
    model.train()
    ahead = DistillAhead(model, prefix_len=8, share=0.5, batches=3)
    for step in range(5):  # steps 0-2 from one run, 3-4 from the next (cut at last_step 4)
        got = ahead(step, windows.__getitem__, last_step=4)
        assert torch.equal(got, self_distill(model, windows[step], 8, 0.5))
        assert torch.equal(got[:2, :8], windows[step][:2, :8]) and torch.equal(got[:2], greedy[step])
        assert torch.equal(got[2:], windows[step][2:]) and not torch.equal(got[:2], windows[step][:2])
    assert model.training  # left as it was
    with pytest.raises(ValueError, match="distill batches"):
        DistillAhead(model, 8, 0.5, batches=0)
    # in runs of at most max_rows rows (a GPU's memory for the AR prefill): the same windows as one run
    stacked = torch.cat([windows[s] for s in range(5)])  # 20 rows, 15 distilled: runs of 4, 4, 4, 3
    assert torch.equal(self_distill(model, stacked, 8, 0.75, max_rows=4), self_distill(model, stacked, 8, 0.75))


def test_a_denoiser_run_generates_its_distilled_windows_ahead(tmp_path, monkeypatch):
    from twotower import distill

    training, run = tiny_training_run(monkeypatch, tmp_path)
    training.run_stage("context", run, profile="test", steps=2)
    calls = []
    real = distill.self_distill
    monkeypatch.setattr(distill, "self_distill", lambda model, tokens, *a: calls.append(len(tokens)) or real(model, tokens, *a))
    training.run_stage("denoiser", run, profile="test", steps=6, distill_share=0.5, distill_from=0.5, distill_batches=2)
    assert calls == [4, 2]  # steps 4-5 in one run (2 distilled rows each), step 6 alone (the run ends there)


def test_distilling_steps_train_on_the_distilled_windows(tmp_path, monkeypatch):
    """The distilled rows generated for a step are the rows it trains on: the first `share` of each distilling
    step's windows continue their prefix with the context tower's greedy text, the other rows (and every row
    before distill_from) are the corpus window itself. Generating them and training on the plain window
    looked the same to the tests that count generations."""
    import numpy as np

    from twotower import data
    from twotower.checkpoint import from_pretrained
    from twotower.data import BatchSampler
    from twotower.distill import self_distill

    training, run = tiny_training_run(monkeypatch, tmp_path)
    stream = np.random.default_rng(1).integers(5, 261, 5000).astype(np.uint16)
    monkeypatch.setattr(data, "encode_split", lambda tok, split, cache: stream)
    training.run_stage("context", run, profile="test", steps=2)
    batches, real = [], training.denoiser_loss

    def record_training_batches(model, tokens, *args, **kwargs):
        if model.training:  # not validation
            batches.append(tokens.clone())
        return real(model, tokens, *args, **kwargs)

    monkeypatch.setattr(training, "denoiser_loss", record_training_batches)
    training.run_stage("denoiser", run, profile="test", steps=4, distill_share=0.5, distill_from=0.5)
    assert len(batches) == 4
    context = from_pretrained(run / "context_ckpt")  # stage 2 keeps this tower frozen: it distils with it
    sampler = BatchSampler(stream, 48, 4, seed=0)  # the test profile's windows: 16 + 4 blocks of 8 tokens
    for step, batch in enumerate(batches):
        window = torch.from_numpy(sampler.batch(step)[:, :48])
        if step < 2:  # before distill_from
            assert torch.equal(batch, window), step
            continue
        distilled = self_distill(context, window, 16, 0.5)
        assert not torch.equal(distilled[:2], window[:2])  # the test can tell the two apart
        assert torch.equal(batch[:2], distilled[:2]) and torch.equal(batch[2:], window[2:]), step
