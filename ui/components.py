"""Gradio's slider and checkbox group with input checks that name the field.

A browser always sends a slider a number in its range and a checkbox group a list of its choices, but an API
caller (gradio_client, a raw POST) can send anything, and Gradio's own preprocessing then failed before any
handler ran: None or "8" for a slider was a TypeError from a comparison, shown as Gradio's bare "The upstream
Gradio app has raised an exception", a string for a checkbox group was walked letter by letter ("Value: 'd' is
not in the list of choices"). These raise gr.Error, which Gradio passes to the caller and the page as it is;
the panel's results stay, since its handler never runs. Refused input is the caller's mistake, not the server's:
it is not logged with a traceback (print_exception=False; every out-of-range edit logged one). (Gradio writes ui/components.pyi beside this module,
a type stub of the subclasses for editors; git ignores it.)
"""

from __future__ import annotations

import math

import gradio as gr


def refused(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)


def from_api(request) -> bool:
    """Whether a handler's call came from gradio_client (or Gradio's MCP server), which marks its requests with
    this header, rather than from the page."""
    headers = getattr(request, "headers", None) or {}
    return headers.get("x-gradio-user") in ("api", "mcp")


def say_refused(message: str, api: bool) -> None:
    """A panel's refused input, said as the caller can see it. The page gets a Warning toast beside the message
    its handler then draws in the panel, over what the panel showed. An API caller gets the message raised, as a
    slider's refusal is: a toast never reaches gradio_client, so a refusal read as a successful call whose
    outputs were HTML and update dicts. api: from_api(the handler's request)."""
    if api:
        raise refused(message)
    gr.Warning(message)


class NumberSlider(gr.Slider):
    is_template = True  # the front end draws it with gr.Slider's own component (Block.get_block_name)

    def preprocess(self, payload):
        payload = checked_number(self, payload)
        # a whole-number slider (precision 0: the API lists it as an integer) passes 2.5 on as it came, as a page's
        # number box sends it: Gradio's rounding made it 2 without a word, and the handlers refuse it in the panel
        # (a refusal here was a bare error toast, the panel's message never reached)
        return payload if self.precision == 0 else super().preprocess(payload)


def checked_number(slider: gr.Slider, payload, clamp: bool = False):
    """The number a slider was sent, refused by name if it is none or out of range; clamp: a number past either
    end is that end instead (NaN is left for the handler to name)."""
    name = slider.label or "a slider"
    if isinstance(payload, bool) or not isinstance(payload, (int, float)):
        raise refused(f"{name} takes a number from {slider.minimum:g} to {slider.maximum:g}, got {payload!r}")
    if clamp and not math.isnan(payload):
        return min(max(payload, slider.minimum), slider.maximum)
    if not math.isnan(payload) and not slider.minimum <= payload <= slider.maximum:  # NaN: the handler names it
        shown = repr(payload) if isinstance(payload, int) else f"{payload:g}"  # (10**400 has no float)
        raise refused(f"{name} takes a number from {slider.minimum:g} to {slider.maximum:g}, got {shown}")
    return payload


class StepScrubber(gr.Slider):  # gr.Slider's direct subclass: a template is drawn as its base class
    """The replay slider: a step past either end is that end. Its number box shows the clamped value as soon as
    it is typed (Gradio's front end clamps), so refusing the typed one left the box at the last step and the
    board at the step before, under an error. Anything that is not a number is still refused by name."""

    is_template = True

    def preprocess(self, payload):
        return super().preprocess(checked_number(self, payload, clamp=True))


class ChoiceGroup(gr.CheckboxGroup):
    is_template = True  # drawn as gr.CheckboxGroup

    def preprocess(self, payload):
        if payload is None:  # nothing ticked, as a browser sends []
            payload = []
        choices = [value for _, value in self.choices]
        if not isinstance(payload, (list, tuple)):
            raise refused(f"{self.label or 'a checkbox group'} takes a list of choices from {choices}, got {payload!r}")
        for value in payload:  # (Gradio's own refusal logged a traceback)
            if value not in choices:
                raise refused(f"{self.label or 'a checkbox group'} takes choices from {choices}, got {value!r}")
        return super().preprocess(list(payload))


class ChoiceRadio(gr.Radio):
    """gr.Radio refusing a value outside its choices by its label, without the traceback Gradio's own refusal
    logged. None is refused too: a page always sends one of the choices."""

    is_template = True  # drawn as gr.Radio

    def preprocess(self, payload):
        choices = [value for _, value in self.choices]
        if payload not in choices or isinstance(payload, bool):  # (True == 1)
            raise refused(f"{self.label or 'a radio group'} takes one of {choices}, got {payload!r}")
        return super().preprocess(payload)


class Switch(gr.Checkbox):
    """gr.Checkbox refusing anything but true or false by its label: Gradio passed an API caller's None or "no"
    on, and None read as off (heal=None ran the prompt unhealed without a word)."""

    is_template = True  # drawn as gr.Checkbox

    def preprocess(self, payload):
        if not isinstance(payload, bool):
            # (check_flag's words)
            raise refused(f"{self.label or 'a checkbox'} must be True or False, got {payload!r}")
        return super().preprocess(payload)
