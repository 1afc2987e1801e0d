"""The two-tower model: a frozen causal context tower and a block denoiser, both native NemotronH stacks.

Weight names follow the release: context_tower.*, context_lm_head.weight, denoiser_tower.*, lm_head.weight,
t_embedder.*, t_block.*, scale_shift_tables.*. Nothing is tied between the towers.

Only what the denoiser adds on top of transformers is written here: adaLN-single time conditioning,
attention over [context K/V ; block K/V] (no mask at inference; training's many blocks per sequence pass a
block mask), and Mamba scans seeded from the context states.
The mixers, norms, router and experts are transformers' own modules, called as they are.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import DynamicCache, NemotronHConfig, NemotronHModel
from transformers.models.nemotron_h.modeling_nemotron_h import eager_attention_forward
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .config import cast_model
from .dense_experts import NAME as DENSE_EXPERTS
from .hf_compat import MODEL_CACHE_KW, pin_time_step_clamp
from .seeded_states import ContextStates, SeededMambaCache
from .short_scan import use_short_scan
from .validation import check_device

MAMBA, ATTENTION = "linear_attention", "full_attention"
DENOISER_PARTS = ("denoiser_tower", "lm_head", "t_embedder", "t_block", "scale_shift_tables")  # module names


class TimestepEmbedder(nn.Module):
    """t in [0, 1] (masked fraction of the block) -> sinusoidal features -> MLP, as in PixArt / DiT."""

    def __init__(self, hidden_size: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = (t.float() * 1000.0)[..., None] * freqs  # scale to DiT's 0..1000 step range
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class TwoTowerModel(nn.Module):
    is_compiled_for_decoding = False  # set by twotower.compiled.compile_towers

    def __init__(self, config: NemotronHConfig):
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.context_tower = NemotronHModel(config)
        self.context_lm_head = nn.Linear(hidden, config.vocab_size, bias=False)
        self.denoiser_tower = NemotronHModel(config)
        self.lm_head = nn.Linear(hidden, config.vocab_size, bias=False)
        self.t_embedder = TimestepEmbedder(hidden, getattr(config, "time_embed_dim", 256))
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 3 * hidden))
        self.scale_shift_tables = nn.ParameterList(
            [nn.Parameter(torch.zeros(3, hidden)) for _ in range(config.num_hidden_layers)]
        )
        nn.init.normal_(self.context_lm_head.weight, std=config.initializer_range)
        nn.init.normal_(self.lm_head.weight, std=config.initializer_range)
        self.reset_time_conditioning()
        for layer in self.denoiser_tower.layers:
            if layer.block_type == ATTENTION:
                layer.mixer.is_causal = False  # bidirectional inside the block
        self.context_tower.requires_grad_(False)
        self.context_lm_head.requires_grad_(False)
        # paths beside transformers' own forward, each deciding per call from its inputs (device, length), with
        # transformers' forward as the twin: dense MoE experts on the CPU (grouped GEMM on a GPU), and closed-form
        # short Mamba-2 scans (every short pass on the CPU; on a GPU 1-token steps and recording verify passes)
        config._experts_implementation = DENSE_EXPERTS
        use_short_scan(self)
        for tower in (self.context_tower, self.denoiser_tower):
            pin_time_step_clamp(tower)

    # ----------------------------------------------------------------------------------------------
    # set-up helpers
    @property
    def layer_types(self) -> list[str]:
        return list(self.config.layers_block_type)

    def reset_time_conditioning(self) -> None:
        """Gates = 1, shift = scale = 0 for every t: the denoiser layers start as plain backbone layers."""
        with torch.no_grad():
            nn.init.zeros_(self.t_block[1].weight)
            nn.init.zeros_(self.t_block[1].bias)
            for table in self.scale_shift_tables:
                table.zero_()
                table[2].fill_(1.0)

    def init_denoiser_from_context(self) -> None:
        """Copy the context tower and head into the denoiser (the release's starting point)."""
        self.denoiser_tower.load_state_dict(self.context_tower.state_dict())
        self.lm_head.load_state_dict(self.context_lm_head.state_dict())
        self.reset_time_conditioning()

    def num_parameters(self, tower: str = "context") -> int:
        parts = ("context_tower", "context_lm_head") if tower == "context" else DENOISER_PARTS
        return sum(p.numel() for part in parts for p in getattr(self, part).parameters())

    @property
    def ctx_device(self) -> torch.device:
        return self.context_lm_head.weight.device

    @property
    def den_device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def ctx_dtype(self) -> torch.dtype:
        return self.context_lm_head.weight.dtype

    @property
    def den_dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def set_denoiser_dtype(self, dtype: torch.dtype) -> "TwoTowerModel":
        """Run the denoiser (tower, head, time conditioning) in `dtype` and leave the context tower as it is.

        Speculative output depends only on the verifier, the context tower: a bf16 draft keeps it equal to
        AR's while the multi-token draft passes get cheaper. As in every cast, the routers stay fp32."""
        return cast_model(self, dtype, prefixes=tuple(part + "." for part in DENOISER_PARTS))

    def place_towers_on_devices(self, ctx_device="cpu", den_device="cpu") -> "TwoTowerModel":
        """Context tower and its head on ctx_device, everything else on den_device. Per-layer K/V and
        Mamba states then cross between the devices once per block (see `context_states`)."""
        ctx_device, den_device = check_device("ctx_device", ctx_device), check_device("den_device", den_device)
        self.context_tower.to(ctx_device)
        self.context_lm_head.to(ctx_device)
        for part in DENOISER_PARTS:
            getattr(self, part).to(den_device)
        return self

    # ----------------------------------------------------------------------------------------------
    # context tower
    def new_cache(self, batch_size: int = 1) -> DynamicCache:
        """An empty cache. batch_size is not read: transformers' cache allocates at the first pass, for its batch
        (kept for callers that name it; nothing is preallocated as in gpt-fast)."""
        return DynamicCache(config=self.config)

    def context_forward(self, input_ids: torch.Tensor, cache: DynamicCache | None, last_only: bool = True):
        """Run the causal context tower over `input_ids` (B, T), extending `cache` in place.

        Returns logits (B, 1, V) for the last position, or (B, T, V) for all when last_only=False.
        """
        out = self.context_tower(input_ids=input_ids.to(self.ctx_device), use_cache=cache is not None, **{MODEL_CACHE_KW: cache})
        hidden = out.last_hidden_state
        if last_only:
            hidden = hidden[:, -1:]
        return self.context_lm_head(hidden).float()

    def context_states(self, cache: DynamicCache) -> ContextStates:
        states = ContextStates.from_cache(cache, self.layer_types)
        if self.ctx_device == self.den_device and self.ctx_dtype == self.den_dtype:
            return states
        return states.to(self.den_device, self.den_dtype)

    # ----------------------------------------------------------------------------------------------
    # denoiser tower
    def time_modulation(self, t: torch.Tensor) -> torch.Tensor:
        """t (N,) -> (N, 3, H): shift, scale, gate before the per-layer tables are added."""
        mod = self.t_block(self.t_embedder(t))
        return mod.view(t.shape[0], 3, self.config.hidden_size)

    def _block_attention(self, attn, x, ctx_kv, attn_mask):
        """Denoiser attention layer: own q/k/v on the block, context K/V in front, no causal mask.

        x: (B, T, H) block hidden states; ctx_kv: keys/values (B, kv_heads, T_ctx, hd).
        attn_mask: None at inference (every block position sees context and block), or a bool
        (T, T_ctx + T) mask when training many blocks of one sequence at once.
        """
        bsz, seq, _ = x.shape
        shape = (bsz, seq, -1, attn.head_dim)
        q = attn.q_proj(x).view(shape).transpose(1, 2)  # (B, heads, T, hd)
        k = attn.k_proj(x).view(shape).transpose(1, 2)  # (B, kv_heads, T, hd)
        v = attn.v_proj(x).view(shape).transpose(1, 2)
        ctx_k, ctx_v = ctx_kv
        k = torch.cat([ctx_k.to(k.dtype), k], dim=2)  # (B, kv_heads, T_ctx + T, hd)
        v = torch.cat([ctx_v.to(v.dtype), v], dim=2)
        interface = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        if attn_mask is not None and self.config._attn_implementation == "eager":
            attn_mask = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill(~attn_mask, float("-inf"))
        out, _ = interface(attn, q, k, v, attn_mask, dropout=0.0, scaling=attn.scaling, is_causal=False)
        return attn.o_proj(out.reshape(bsz, seq, -1))  # (B, T, heads·hd): the heads side by side

    def denoise(
        self,
        block_ids: torch.Tensor,
        ctx: ContextStates,
        t: torch.Tensor,
        block_size: int | None = None,
        attn_mask: torch.Tensor | None = None,
        head_positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One denoiser pass. Returns logits (B, T, V) in fp32, or (N, V) for the N positions selected by
        the bool `head_positions` (B, T) — training scores only masked positions and decoding predicts only
        open ones (draft_block), sparing the vocab matmul the rest.

        block_ids: (B, T) tokens, masked positions hold the mask id. At inference T = S (one block).
        In training T = nb·S holds nb independent blocks of one sequence: t is then (B, nb), each Mamba
        layer scans the (B·nb, S) blocks from ctx.mamba states of shape (B·nb, ...), and attention uses
        `attn_mask` (block-causal over context, block-diagonal over the noisy positions).
        """
        h = self.denoiser_hidden(block_ids, ctx, t, block_size, attn_mask)  # (B, T, H)
        if head_positions is not None:
            h = h[head_positions.to(h.device)]  # (N, H)
        return self.lm_head(h).float()

    def denoiser_hidden(self, block_ids: torch.Tensor, ctx: ContextStates, t: torch.Tensor, block_size: int | None,
                        attn_mask: torch.Tensor | None) -> torch.Tensor:
        """The denoiser tower without its head: (B, T) ids -> (B, T, H) final-normed hidden states. Kept
        apart from the head so that it holds no data-dependent shape (the head's open-position gather has
        one) and can be compiled as one graph (`twotower.compiled`)."""
        bsz, seq = block_ids.shape
        block_size = block_size or seq
        n_blocks = seq // block_size
        t = t.reshape(bsz * n_blocks).to(self.den_device)  # (B·nb,): one time per block
        mod = self.time_modulation(t).view(bsz, n_blocks, 1, 3, -1)  # (B, nb, 1, 3, H)
        h = self.denoiser_tower.embeddings(block_ids.to(self.den_device))
        seeded = SeededMambaCache(ctx.mamba)
        for idx, layer in enumerate(self.denoiser_tower.layers):
            ada = (self.scale_shift_tables[idx] + mod).expand(bsz, n_blocks, block_size, 3, -1)  # (B, nb, S, 3, H)
            shift, scale, gate = ada.reshape(bsz, seq, 3, -1).unbind(dim=2)  # each (B, T, H)
            if layer.block_type in (MAMBA, ATTENTION):  # modulate, then normalise
                x = layer.norm(_modulate(h, shift, scale))
                if layer.block_type == MAMBA:
                    x = x.reshape(bsz * n_blocks, block_size, -1)  # (B·nb, S, H): blocks scan independently
                    y = layer.mixer(x, cache=seeded).reshape(bsz, seq, -1)  # back to (B, T, H)
                else:
                    y = self._block_attention(layer.mixer, x, ctx.attn[idx], attn_mask)
            else:  # MoE / MLP: normalise, then modulate
                y = layer.mixer(_modulate(layer.norm(h), shift, scale))
            h = h + gate * y
        return self.denoiser_tower.norm_f(h)
