"""The stage-2 training path against its inference twin: the denoiser trained on every block of a window
at once must see exactly what inference shows each block (clean context through the context tower)."""

import pytest
import torch

from twotower import build_model
from twotower.training import PROFILES, TrainConfig, block_attention_mask, context_features, denoiser_loss, mask_blocks


def test_all_blocks_in_one_pass_equal_block_by_block_inference():
    torch.manual_seed(0)
    model = build_model("tiny", seed=3).eval()
    model.init_denoiser_from_context()
    prefix, size, n_blocks = 8, 4, 5
    tokens = torch.randint(5, 250, (2, prefix + size * n_blocks))
    noisy = tokens[:, prefix:].clone()
    noisy[:, ::3] = model.config.mask_token_id
    t = (noisy == model.config.mask_token_id).view(2, n_blocks, size).float().mean(-1)
    with torch.no_grad():
        ctx = context_features(model, tokens, prefix, size)
        mask = block_attention_mask(prefix, n_blocks, size, prefix + (n_blocks - 1) * size)
        together = model.denoise(noisy, ctx, t, block_size=size, attn_mask=mask)  # (B, nb·S, V)
        apart = []
        for b in range(n_blocks):
            cache = model.new_cache()
            model.context_forward(tokens[:, : prefix + b * size], cache)
            apart.append(model.denoise(noisy[:, b * size : (b + 1) * size], model.context_states(cache), t[:, b]))
    assert torch.allclose(together, torch.cat(apart, dim=1), atol=1e-5)


def test_mask_blocks_masks_at_least_one_position_per_block():
    gen = torch.Generator().manual_seed(0)
    targets = torch.randint(5, 250, (64, 6 * 4))
    noisy, masked, t = mask_blocks(targets, 6, 4, mask_id=4, generator=gen)
    per_block = masked.view(64, 6, 4)
    assert per_block.any(-1).all()
    assert torch.equal(noisy[masked], torch.full_like(noisy[masked], 4)) and torch.equal(noisy[~masked], targets[~masked])
    assert torch.allclose(t, per_block.float().mean(-1))
    assert 0.3 < masked.float().mean() < 0.7  # t ~ U(0, 1): about half masked on average


def test_denoiser_loss_trains_only_the_denoiser():
    model = build_model("tiny", seed=1)
    model.init_denoiser_from_context()
    model.train()
    cfg = TrainConfig(**{**PROFILES["cpu"], "prefix_len": 8, "block_size": 4, "dtype": "float32"})
    loss = denoiser_loss(model, torch.randint(5, 250, (2, 8 + 4 * 3)), cfg, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None for p in model.context_tower.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.denoiser_tower.parameters())


def test_a_resumed_run_keeps_the_history_of_its_settings(tmp_path):
    """A resume may change the schedule's length or the distillation share: the checkpoint says which
    steps ran with which settings (the model card reports them), the last part only as far as it got."""
    from dataclasses import asdict, replace

    from twotower.training import _load_state, _save_state

    model = build_model("tiny", seed=0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    cfg = TrainConfig(**PROFILES["cpu"])
    first = {"from_step": 0, "to_step": 450, "train_config": {**asdict(cfg), "total_steps": 450}}
    second = {"from_step": 450, "to_step": 1150,
              "train_config": {**asdict(replace(cfg, distill_share=0.75)), "total_steps": 1150}}
    _save_state(tmp_path, model, optimizer, 600, "denoiser", [{"step": 600, "loss": 1.0}], cfg, [first, second])
    _, _, step, log, segments = _load_state(tmp_path, "denoiser", None)
    assert step == 600 and log == [{"step": 600, "loss": 1.0}]
    assert [(s["from_step"], s["to_step"]) for s in segments] == [(0, 450), (450, 600)]
    assert [s["train_config"]["distill_share"] for s in segments] == [0.0, 0.75]


def test_a_run_continued_from_a_shipped_model_keeps_its_history(tmp_path):
    """`--resume --init-from <export>`: weights, step count, logs and segments come from the export,
    and the next export still carries the context stage's record (the run never had its checkpoint)."""
    import json

    from twotower.checkpoint import save_pretrained
    from twotower.training import _adopt_export, _load_export, _save_state, export

    shipped, run = tmp_path / "shipped", tmp_path / "run"
    model = build_model("tiny", seed=0)
    save_pretrained(model, shipped)
    (shipped / "tokenizer.model").write_bytes(b"sentencepiece bytes")
    seg = {"from_step": 0, "to_step": 30, "train_config": {"distill_share": 0.0, "total_steps": 30}}
    info = {"context_stage": {"steps": 20, "train_config": {"lr": 1}, "segments": []},
            "denoiser_stage": {"steps": 30, "train_config": {"lr": 2}, "segments": [seg]}}
    (shipped / "training_info.json").write_text(json.dumps(info))
    (shipped / "train_denoiser_log.jsonl").write_text(json.dumps({"step": 30, "loss": 2.5}) + "\n")

    record = _adopt_export(shipped, run)
    assert record == info["denoiser_stage"]
    loaded, step, log, segments = _load_export(shipped, run, record)
    assert step == 30 and log == [{"step": 30, "loss": 2.5}] and segments == [seg]
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert (run / "tokenizer.model").read_bytes() == b"sentencepiece bytes"

    optimizer = torch.optim.AdamW([p for p in loaded.parameters() if p.requires_grad], lr=1e-3)
    new = {"from_step": 30, "to_step": 40, "train_config": {"distill_share": 0.75, "total_steps": 40}}
    _save_state(run, loaded, optimizer, 40, "denoiser", [*log, {"step": 40, "loss": 2.0}],
                TrainConfig(**PROFILES["cpu"]), [*segments, new])
    out = json.loads((export(run, tmp_path / "next") / "training_info.json").read_text())
    assert out["context_stage"] == info["context_stage"]
    assert [(s["from_step"], s["to_step"]) for s in out["denoiser_stage"]["segments"]] == [(0, 30), (30, 40)]

    (run / "tokenizer.model").write_bytes(b"another tokenizer")
    with pytest.raises(ValueError, match="differs"):
        _adopt_export(shipped, run)


def test_continuing_a_model_past_its_steps_fails_before_any_corpus_work(tmp_path, monkeypatch):
    import json

    from twotower import data, training

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "tokenizer.model").write_bytes(b"x")
    (tmp_path / "m" / "training_info.json").write_text(json.dumps({"denoiser_stage": {"steps": 500}}))
    monkeypatch.setattr(data, "encode_split", lambda *a, **k: pytest.fail("encoded the corpus first"))
    with pytest.raises(ValueError, match="already has 500 denoiser steps"):
        training.run_stage("denoiser", tmp_path / "run", resume=True, init_from=str(tmp_path / "m"), steps=400)


def test_a_learning_rate_override_is_checked_before_any_corpus_work(tmp_path, monkeypatch):
    import argparse

    from twotower import data, training

    monkeypatch.setattr(data, "encode_split", lambda *a, **k: pytest.fail("encoded the corpus first"))
    with pytest.raises(ValueError, match="--lr must be > 0"):
        training.run_stage("denoiser", tmp_path / "run", lr=0.0)
    parser = argparse.ArgumentParser()
    training.add_arguments(parser)
    assert parser.parse_args(["--stage", "denoiser", "--lr", "1e-3"]).lr == 1e-3
