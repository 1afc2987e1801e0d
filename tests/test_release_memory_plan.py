"""The memory plan for the release preset against a hand computation from the config fields, its fit
verdicts, and `twotower plan` on the command line."""

import pytest
import torch

from twotower import build_model
from twotower.cli import main as cli_main
from twotower.config import make_config
from twotower.memory_plan import GIB, format_memory_plan, plan_memory
from twotower.release_loader import write_release_layout

PUBLISHED_PER_TOWER = 31.6e9  # Nemotron-3-Nano-30B-A3B: 31.6 B total parameters; the release is two of them


@pytest.fixture(scope="module")
def release():
    return make_config("release")


def hand_count(c) -> tuple[int, int]:
    """Parameters of one tower (+ its head), and of the time conditioning, from the config fields."""
    H, V = c.hidden_size, c.vocab_size
    kinds = list(c.layers_block_type)
    n_mamba, n_moe, n_attn = kinds.count("linear_attention"), kinds.count("moe"), kinds.count("full_attention")
    inner = c.mamba_num_heads * c.mamba_head_dim  # 4096
    conv_dim = inner + 2 * c.n_groups * c.ssm_state_size  # x, B, C: 6144
    mamba = (H * (inner + conv_dim + c.mamba_num_heads)  # in_proj -> gate, xBC, dt
             + conv_dim * c.conv_kernel + conv_dim  # depthwise conv1d weight + bias
             + 3 * c.mamba_num_heads  # dt_bias, A_log, D
             + inner  # gated RMSNorm
             + inner * H)  # out_proj
    moe = (c.n_routed_experts * 2 * H * c.moe_intermediate_size  # up (inter, H) + down (H, inter) per expert
           + 2 * H * c.moe_shared_expert_intermediate_size  # shared expert
           + c.n_routed_experts * H)  # router
    attn = 2 * H * c.num_attention_heads * c.head_dim + 2 * H * c.num_key_value_heads * c.head_dim
    layers = n_mamba * mamba + n_moe * moe + n_attn * attn + len(kinds) * H  # + one pre-norm per layer
    tower = V * H + layers + H + V * H  # embeddings, layers, norm_f, head
    time_cond = (c.time_embed_dim * H + H) + (H * H + H) + (H * 3 * H + 3 * H) + len(kinds) * 3 * H
    return tower, time_cond


def test_release_preset_is_nemotron_3_nano_shaped(release):
    kinds = list(release.layers_block_type)
    assert (len(kinds), kinds.count("linear_attention"), kinds.count("moe"), kinds.count("full_attention")) == (52, 23, 23, 6)
    assert (release.hidden_size, release.vocab_size, release.moe_intermediate_size,
            release.moe_shared_expert_intermediate_size, release.n_routed_experts, release.num_experts_per_tok) == (
        2688, 131072, 1856, 3712, 128, 6)


def test_release_plan_matches_hand_computation(release):
    plan = plan_memory(release, "cuda:0", "cuda:1", context_length=8192, batch_size=1, dtype=torch.bfloat16,
                       device_memory={"cuda:0": 80, "cuda:1": 80})
    tower, time_cond = hand_count(release)
    assert plan["parameters"]["context"] == tower
    assert plan["parameters"]["denoiser"] == tower + time_cond
    assert abs(tower - PUBLISHED_PER_TOWER) / PUBLISHED_PER_TOWER < 0.01  # 31.58 B
    total = plan["parameters"]["total"]
    assert abs(total - 2 * PUBLISHED_PER_TOWER) / (2 * PUBLISHED_PER_TOWER) < 0.01  # 63.19 B: "60-63 B"

    c = release
    n_moe = list(c.layers_block_type).count("moe")
    n_attn = list(c.layers_block_type).count("full_attention")
    n_mamba = list(c.layers_block_type).count("linear_attention")
    router_bias = n_moe * c.n_routed_experts * 4  # e_score_correction_bias stays fp32 (a buffer)
    router_weight = n_moe * c.n_routed_experts * c.hidden_size * 2  # fp32: 2 bytes more than bf16 per parameter
    ctx, den = plan["devices"]["cuda:0"], plan["devices"]["cuda:1"]
    assert ctx["weights"] == 2 * tower + router_bias + router_weight
    assert den["weights"] == 2 * (tower + time_cond) + router_bias + router_weight
    kv = n_attn * 2 * c.num_key_value_heads * c.head_dim * 8192 * 2  # K and V, bf16
    conv_dim = c.mamba_num_heads * c.mamba_head_dim + 2 * c.n_groups * c.ssm_state_size
    mamba = n_mamba * (conv_dim * c.conv_kernel * 2 + c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size * 4)
    assert (ctx["kv_cache"], ctx["mamba_states"]) == (kv, mamba)
    assert den["kv_cache"] == n_attn * 2 * c.num_key_value_heads * c.head_dim * 16 * 2  # one block of S = 16
    assert den["context_copy"] == kv + mamba  # context K/V and states cross to the denoiser's GPU per block
    assert 58 * GIB < ctx["weights"] < 60 * GIB  # "about 59 GB per GPU"


def test_a_denoiser_in_its_own_dtype_is_planned_in_it(release):
    """fp32 context tower, bf16 denoiser (the engine's --den-dtype) on one device: each tower's weights in its
    own dtype, and the per-block copy of the context K/V and states into the denoiser's dtype is counted."""
    same = plan_memory(release, "cuda:0", "cuda:0", dtype=torch.float32)["devices"]["cuda:0"]
    mixed_plan = plan_memory(release, "cuda:0", "cuda:0", dtype=torch.float32, den_dtype=torch.bfloat16)
    mixed = mixed_plan["devices"]["cuda:0"]
    tower, time_cond = hand_count(release)
    routers = list(release.layers_block_type).count("moe") * release.n_routed_experts * release.hidden_size
    # the denoiser's half: 4 -> 2 bytes, but for its routers' weights (fp32 in every dtype)
    assert same["weights"] - mixed["weights"] == 2 * (tower + time_cond - routers)
    assert mixed["kv_cache"] < same["kv_cache"] and same["context_copy"] == 0  # its block K/V in bf16
    assert mixed["context_copy"] == plan_memory(release, "cuda:0", "cuda:1", dtype=torch.bfloat16)["devices"][
        "cuda:1"]["context_copy"]  # the context's K/V and states, held again in bf16
    assert "weights in float32 (denoiser bfloat16)" in format_memory_plan(mixed_plan)


def test_fit_verdicts(release):
    one = plan_memory(release, "cuda:0", "cuda:0", device_memory={"cuda:0": 80})
    two = plan_memory(release, "cuda:0", "cuda:1", device_memory={"cuda:0": 80, "cuda:1": 80})
    h200 = plan_memory(release, "cuda:0", "cuda:0", device_memory={"cuda:0": 141})
    assert one["fits"] is False and one["devices"]["cuda:0"]["context_copy"] == 0
    assert two["fits"] is True and h200["fits"] is True
    assert "overall: does not fit" in format_memory_plan(one)
    assert "overall: fits" in format_memory_plan(two)
    text = format_memory_plan(two)
    assert "10% of each device is left free for activations" in text and "72.00 GiB" in text
    # The usable share is 90 %: a device just above the weights but without headroom does not fit.
    tight = two["devices"]["cuda:0"]["total"] / GIB / 0.95
    assert plan_memory(release, "cuda:0", "cuda:1", device_memory={"cuda:0": tight, "cuda:1": 80})["fits"] is False
    unknown = plan_memory(make_config("tiny"), "cuda:6", "cuda:7")  # not visible here: nobody to ask
    assert unknown["fits"] is None and "memory unknown" in format_memory_plan(unknown)


def test_a_cpu_plan_reads_this_machines_memory(monkeypatch):
    """The plan said "memory unknown" for "cpu" on every machine: a laptop user's one question went unanswered."""
    import twotower.memory_plan as memory_plan

    config = make_config("tiny")
    monkeypatch.setattr(memory_plan, "host_memory", lambda: 8.0 * GIB)
    part = plan_memory(config, "cpu", "cpu")["devices"]["cpu"]
    assert part["capacity"] == 8 * GIB and part["usable"] == 8 * GIB * 0.9 and part["fits"] is True
    monkeypatch.setattr(memory_plan, "host_memory", lambda: 1024.0)  # 1 KiB: nothing fits
    assert plan_memory(config, "cpu", "cpu")["fits"] is False
    monkeypatch.setattr(memory_plan, "host_memory", lambda: None)  # an OS that does not say
    assert plan_memory(config, "cpu", "cpu")["fits"] is None
    assert plan_memory(config, "cpu", "cpu", device_memory={"cpu": 2})["devices"]["cpu"]["capacity"] == 2 * GIB
    monkeypatch.undo()
    assert memory_plan.host_memory() is None or memory_plan.host_memory() > 2 ** 20  # this machine's own


def test_bad_plan_input_is_a_clear_error(release):
    with pytest.raises(ValueError, match="context length must be a positive integer"):
        plan_memory(release, context_length=0)
    with pytest.raises(ValueError, match="batch size"):
        plan_memory(release, batch_size=-1)
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        plan_memory(release, dtype="int8")
    with pytest.raises(ValueError, match="not a device: 'gpu7'"):
        plan_memory(release, ctx_device="gpu7")
    with pytest.raises(ValueError, match="positive number of GiB"):
        plan_memory(release, device_memory={"cuda:0": -3, "cuda:1": 80})


def test_plan_command(capsys, tmp_path):
    assert cli_main(["plan", "--preset", "release", "--device-memory-gb", "80"]) == 0
    out = capsys.readouterr().out
    assert "total 63.186 B" in out and "overall: fits" in out
    assert cli_main(["plan", "--preset", "release", "--den-device", "cuda:0", "--device-memory-gb", "cuda:0=80"]) == 0
    assert "overall: does not fit" in capsys.readouterr().out
    directory = write_release_layout(build_model("tiny"), tmp_path / "tiny", n_shards=3)
    assert cli_main(["plan", "--model", str(directory), "--ctx-device", "cpu", "--den-device", "cpu",
                     "--device-memory-gb", "1", "--json"]) == 0
    assert '"fits": true' in capsys.readouterr().out
    assert cli_main(["plan", "--preset", "release", "--batch-size", "2", "--json"]) == 0  # bench's spelling: a
    assert '"batch_size": 2' in capsys.readouterr().out  # typo's suggestion was --block-size, another setting
    assert cli_main(["plan", "--preset", "release", "--device-memory-gb", "lots"]) == 2
    err = capsys.readouterr().err
    assert "takes a number of GiB" in err and "Traceback" not in err
    assert cli_main(["plan", "--model", str(tmp_path / "none")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_plan_names_a_config_that_builds_nothing(capsys, tmp_path):
    """A config.json that reads but describes no buildable model: plan said so with a RuntimeError or a
    ZeroDivisionError traceback, where generate gave one line."""
    import json

    from twotower.checkpoint import save_pretrained

    directory = tmp_path / "bad"
    save_pretrained(build_model("tiny"), directory)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "num_attention_heads": 0}))
    assert cli_main(["plan", "--model", str(directory)]) == 2
    err = capsys.readouterr().err
    assert "config.json describes no model that can be built" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("den_device", ["cuda:1", "cuda:0"])
def test_state_bytes_grow_with_the_batch(release, den_device):
    """Every sequence of a batch has its own K/V cache, Mamba states and (towers on two devices) its own copy
    of the context's: at batch 4 each is exactly 4x batch 1's, on both devices, while the weights stay. The
    hand computation above runs at batch 1 only, where a term that forgot the batch size is still right."""
    one, four = (plan_memory(release, "cuda:0", den_device, context_length=4096, batch_size=b)["devices"]
                 for b in (1, 4))
    for device in one:
        for part in ("kv_cache", "mamba_states", "context_copy"):
            assert four[device][part] == 4 * one[device][part], (device, part)
        assert four[device]["weights"] == one[device]["weights"]
    assert all(one[d]["kv_cache"] > 0 and one[d]["mamba_states"] > 0 for d in one)
    assert (one["cuda:1"]["context_copy"] > 0) if den_device == "cuda:1" else (one["cuda:0"]["context_copy"] == 0)


def test_cuda_and_cuda_0_are_one_device():
    """`--ctx-device cuda --den-device cuda:0` planned two devices' worth: a copy of the context states for a
    crossing that is none. "cuda" is torch's current device, cuda:0 unless set otherwise."""
    config = make_config("default")
    assert plan_memory(config, "cuda", "cuda:0") == plan_memory(config, "cuda:0", "cuda:0")
    assert list(plan_memory(config, "cuda", "cuda:1")["devices"]) == ["cuda:0", "cuda:1"]


def test_cpu_0_and_mps_0_are_the_one_device_they_name():
    """cpu:0 beside cpu was planned as two machines, each with all of this one's memory: a plan twice the memory
    given said "fits", with a context copy for a crossing that is none."""
    config = make_config("release")
    plan = plan_memory(config, "cpu", "cpu:0", device_memory={"cpu": 100})
    assert list(plan["devices"]) == ["cpu"] and plan["fits"] is False
    assert plan["devices"]["cpu"]["context_copy"] == 0
    assert list(plan_memory(config, "mps:0", "mps", device_memory={"mps": 200})["devices"]) == ["mps"]


def test_ssm_states_are_planned_in_fp32_whatever_the_config_says():
    """transformers' NemotronH reads no mamba_ssm_cache_dtype: its scans leave the state fp32 (a float16 field
    halved the plan of a cache measured fp32; "banana" there refused the plan, not the load)."""
    config = make_config("default")
    fp32 = plan_memory(config, "cpu", "cpu", device_memory={"cpu": 8})
    for field in ("float16", "banana"):
        config.mamba_ssm_cache_dtype = field
        assert plan_memory(config, "cpu", "cpu", device_memory={"cpu": 8}) == fp32


def test_the_plan_refuses_sizes_past_the_engines_bounds(release):
    with pytest.raises(ValueError, match="block size must be at most 4,096, got 5,000"):
        plan_memory(release, block_size=5000)
    with pytest.raises(ValueError, match="batch size must be at most 1,024, got 1,025"):
        plan_memory(release, batch_size=1025)
    with pytest.raises(ValueError, match="context length must be at most 16,777,216, got a number of about 400 digits"):
        plan_memory(release, context_length=10**399)  # (its GiB overflowed a float: a traceback)
    with pytest.raises(ValueError, match="about 5,000 digits"):
        plan_memory(release, context_length=10**4999)  # past str()'s 4,300 digits
    assert plan_memory(release, context_length=2**24, device_memory={"cuda:0": 80, "cuda:1": 80})["fits"] is False


def test_sizes_under_a_mebibyte_are_shown_in_kibibytes():
    """The default model's Mamba states (350 KiB) and a short context's K/V read "0.0 MiB", as if there were none."""
    plan = plan_memory(make_config("default"), "cpu", "cpu", context_length=16, device_memory={"cpu": 8})
    text = format_memory_plan(plan)
    kv = plan["devices"]["cpu"]["kv_cache"]
    assert 0 < kv < 2**20 and f"{kv / 1024:.1f} KiB" in text and "context copy" in text
