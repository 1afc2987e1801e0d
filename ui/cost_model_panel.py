"""Handlers of the Cost and Model panels: $/M tokens from measured or typed throughput (ui/cost.py's arithmetic),
and what is loaded with its memory plan (twotower.memory_plan). Nothing runs the model here; `PanelHandlers`
takes these methods in (it needs only `self.engine`).
"""

from __future__ import annotations

import gradio as gr

from twotower.engine import LAYER_KEY
from twotower.validation import check_block_size

from .components import from_api, say_refused
from .cost import cost_table
from .panel_common import MAX_NEW_TOKENS, unavailable, whole
from .plots import cost_bars
from .render import esc, kv_table_html, note_html
from .render_panels import MODE_LABELS, amount, cost_html, figure_decimals


def raced(measured) -> bool:
    """Whether the session's Race numbers (the race_measured state) hold a timed mode."""
    return bool(measured and measured.get("tokens_per_s"))


class CostModelPanel:
    """The Cost and Model panels' handlers (a mixin: `self.engine` is the app's engine; the session's last table
    is kept by PanelHandlers._keep_shown)."""

    # ---------------------------------------------------------------- Cost
    def cost(self, usd_per_gpu_hour, gpus, utilisation_pct, tps_ar, tps_diffusion, tps_speculative,
             api_usd_per_million, measured=None, request: gr.Request = None):
        """Monthly cost and $/M output tokens per mode. Returns (table, bar chart); a refused form: (its
        message over the session's last table, the chart left as it was: both the last form computed's).

        `measured` is the session's last Race result: a throughput equal to the one it measured is labelled
        as measured on this machine, any other number as typed by the user.
        """
        throughputs = {"ar": tps_ar, "diffusion": tps_diffusion, "speculative": tps_speculative}
        try:
            try:
                if isinstance(utilisation_pct, bool):  # float(True): 1 %
                    raise TypeError
                util = None if utilisation_pct is None else float(utilisation_pct) / 100.0
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"utilisation must be a number of percent, got {utilisation_pct!r}") from None
            lines = cost_table(throughputs, usd_per_gpu_hour, gpus, util, api_usd_per_million)
        except ValueError as exc:  # the last form computed stays, as a refused Sweep keeps its plot
            say_refused(str(exc), from_api(request))  # as every other panel's refusal (the message stays after the toast)
            return self._over_shown(getattr(request, "session_hash", None), "cost", exc,
                                    "Below: the last form computed."), gr.skip()
        labels = provenance(measured, throughputs)
        # a Race on this CPU gives a machine's throughput, which the fields price per GPU-hour: say so
        on_cpu = any((measured or {}).get("devices", {}).get(mode) == "cpu" for mode in labels)
        left_out = tuple(mode for mode in throughputs if mode not in {line.mode for line in lines})
        gpus = float(gpus)  # cost_table read them all (a whole number; 1e300 in 3 digits, not 301)
        priced_with = (f"Priced at ${amount(float(usd_per_gpu_hour), 2)} per GPU-hour, {amount(gpus, 0)} GPU"
                       f"{'' if gpus == 1 else 's'}, {100 * util:.4g} % utilisation.")
        table = cost_html(lines, labels, api_usd_per_million, on_cpu, left_out, priced_with)
        self._keep_shown(getattr(request, "session_hash", None), "cost", table)
        return table, cost_bars(lines, api_usd_per_million)

    def cost_from_race(self, usd_per_gpu_hour, gpus, utilisation_pct, tps_ar, tps_diffusion, tps_speculative,
                       api_usd_per_million, measured=None, request: gr.Request = None):
        """Cost after "Use the last Race's measurements": with no Race to copy (a warning said so) the panel keeps
        what it shows, instead of adding a "no throughput given" box under the warning. (Named parameters: Gradio
        hands gr.Request to none that follows a *args.)"""
        if not raced(measured):
            return gr.skip(), gr.skip()
        return self.cost(usd_per_gpu_hour, gpus, utilisation_pct, tps_ar, tps_diffusion, tps_speculative,
                         api_usd_per_million, measured, request=request)

    def use_race_numbers(self, measured):
        """Copy the session's Race measurements (each mode's latest) into the Cost inputs."""
        if not raced(measured):
            gr.Warning("No Race run yet in this session: run the Race panel first, or type throughputs.")
            return gr.skip(), gr.skip(), gr.skip()
        tps = measured["tokens_per_s"]  # a mode no Race of this session timed keeps what the user typed
        priced = ("ar", "diffusion", "speculative")
        left = [MODE_LABELS.get(mode, mode) for mode in tps if mode not in priced]
        if left:  # a Race of anchored diffusion and mock-AR filled AR alone, without a word
            gr.Info(f"Not copied: {', '.join(left)} (the Cost panel prices AR, diffusion and speculative).")
        # four significant digits, at least two decimals (provenance recognises them as measured)
        return tuple(round(tps[mode], figure_decimals(tps[mode])) if mode in tps else gr.skip() for mode in priced)

    # ---------------------------------------------------------------- Model
    def model_info(self, block_size=None, request: gr.Request = None):
        """What is loaded (Engine.describe) and, when twotower.memory_plan exists, its plan for this config at
        block size S (None: the model's). A refused S: its message over the session's last plan (the page's first,
        at the model's S, before any), which stays, as every panel's refusal keeps what it showed."""
        session = getattr(request, "session_hash", None)
        try:  # (the number box takes 2.5: the plan went, for "No memory plan for this configuration")
            block_size = None if block_size is None else check_block_size(whole(block_size))
        except ValueError as exc:
            say_refused(str(exc), from_api(request))
            return self._over_shown(session, "model", exc, "Below: the last plan.", first=self.model_info)
        info = self.engine.describe()
        # yes / no, not Python's True / False
        html = kv_table_html({MODEL_LABELS.get(k, k): ({True: "yes", False: "no"}[v] if isinstance(v, bool) else v)
                              for k, v in info.items()}, "Loaded model")
        try:
            from twotower.memory_plan import format_memory_plan, plan_memory
        except ImportError as exc:
            return html + note_html(unavailable("The memory plan (twotower.memory_plan)", exc))
        model = self.engine.model
        try:
            # the longest context this app decodes: its longest prompt and the max new tokens slider's end
            plan = plan_memory(model.config, ctx_device=str(model.ctx_device), den_device=str(model.den_device),
                               dtype=model.context_lm_head.weight.dtype, den_dtype=model.lm_head.weight.dtype,
                               context_length=self.engine.max_prompt_tokens + MAX_NEW_TOKENS,
                               block_size=None if block_size is None else whole(block_size))
        except ValueError as exc:
            return html + note_html(f"No memory plan for this configuration: {exc}")
        text = esc(format_memory_plan(plan, "`twotower plan --device-memory-gb` takes a device's memory"))
        html += f'<h4>Memory plan per device</h4><pre class="tt-text tt-plan">{text}</pre>'
        self._keep_shown(session, "model", html)
        return html


# Engine.describe's keys, as the Model tab shows them (the API's /model_info returns the same table)
MODEL_LABELS = {
    "checkpoint": "checkpoint", "params_context": "context tower parameters", "params_denoiser": "denoiser parameters",
    "layer_pattern": f"layer pattern ({LAYER_KEY})", "hidden_size": "hidden size",
    "vocab_size": "vocabulary size", "ctx_device": "context tower device", "den_device": "denoiser device",
    "dtype": "context tower dtype", "den_dtype": "denoiser dtype", "compiled": "decode passes compiled (torch.compile)",
    "input_major_weights": "weight matrices stored input-major (count; faster CPU matmuls)",
}


def provenance(measured, throughputs: dict) -> dict[str, str]:
    """Label each typed throughput that equals a Race measurement of this session with that Race's label."""
    if not measured:
        return {}
    labels = {}
    for mode, value in throughputs.items():
        ref = measured.get("tokens_per_s", {}).get(mode)
        # as copied: a 2-decimal tolerance called a typed 0.001 the measured 0.004, and a copied 0.13 the measured 0.126
        if ref and value not in (None, "") and abs(float(value) - ref) <= 0.5 * 10 ** -figure_decimals(ref) + 1e-9 * abs(ref):
            labels[mode] = measured["labels"][mode]  # set with the number, by the Race that measured it
    return labels


