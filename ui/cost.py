"""Serving-cost arithmetic on a measured throughput (pure; the Cost panel and its tests call it).

A rented GPU is paid for every hour of the month whether busy or not, so
    monthly cost      = $/GPU-hour x GPUs x 24 x 30
    monthly tokens    = tokens/s x 3600 x 24 x 30 x utilisation x GPUs
    $ per M tokens    = monthly cost / (monthly tokens / 1e6)
and against an API charging `api_price` $ per M output tokens, self-hosting pays off from
    break-even volume = monthly cost / api_price   (M tokens a month)
provided the GPUs can serve that much (break-even <= capacity); otherwise this set-up never breaks even.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HOURS_PER_MONTH = 24 * 30
SECONDS_PER_MONTH = 3600 * HOURS_PER_MONTH


@dataclass(frozen=True)
class CostLine:
    mode: str
    tokens_per_s: float  # per GPU
    monthly_tokens: float
    monthly_cost: float
    usd_per_million: float
    break_even_million: float | None  # M tokens / month at which self-hosting costs what the API does
    breaks_even: bool | None  # None without an API price


def _number(name: str, value, minimum: float, *, inclusive: bool = True) -> float:
    if value is None:
        # a number box sends nothing for what it cannot read as a number ("abc", 1e309) as for an empty one
        raise ValueError(f"{name} is empty or not a number: type a number")
    if isinstance(value, bool):  # float(True) is 1.0: an API caller's flag is no number
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an integer past float's range (10**400): an OverflowError the panel did not catch
        raise ValueError(f"{name} must be a finite number, got an integer of {len(str(abs(value)))} digits") from None
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value:g}")
    if value < minimum or (not inclusive and value == minimum):
        bound = f"> {minimum:g}" if not inclusive else f">= {minimum:g}"
        raise ValueError(f"{name} must be {bound}, got {value:g}")
    return value


def monthly_cost(usd_per_gpu_hour: float, gpus: float) -> float:
    return usd_per_gpu_hour * gpus * HOURS_PER_MONTH


def monthly_tokens(tokens_per_s: float, gpus: float, utilisation: float) -> float:
    return tokens_per_s * SECONDS_PER_MONTH * utilisation * gpus


def cost_line(mode: str, tokens_per_s, usd_per_gpu_hour, gpus, utilisation, api_usd_per_million=None) -> CostLine:
    """One mode's monthly cost, $/M output tokens and break-even volume. Bad numbers -> ValueError."""
    name = {"ar": "AR"}.get(mode, mode)  # as the panel's fields name it
    tps = _number(f"{name} throughput (tokens/s)", tokens_per_s, 0.0, inclusive=False)
    price = _number("price per GPU-hour ($)", usd_per_gpu_hour, 0.0)
    gpus = _number("number of GPUs", gpus, 1.0)
    if gpus != int(gpus):
        raise ValueError(f"number of GPUs must be a whole number, got {gpus:g}")
    util = _number("utilisation", utilisation, 0.0, inclusive=False)
    if util > 1.0:
        raise ValueError(f"utilisation must be a fraction in (0, 1] (100 % at most), got {util:g}")
    cost = monthly_cost(price, gpus)
    tokens = monthly_tokens(tps, gpus, util)
    beyond = ("these numbers give a cost beyond what can be computed: check the price per GPU-hour, "
              f"the GPUs and the {name} throughput")
    if not tokens / 1e6 > 0:  # a throughput so small that a month's tokens underflow to 0 (5e-324 tokens/s at 1 %):
        raise ValueError(beyond)  # it divided by zero and the panel showed Gradio's bare Error
    per_million = cost / (tokens / 1e6)
    if not math.isfinite(cost):  # before the API price is read: $1e306 an hour was blamed on a $1 API price
        raise ValueError(beyond)
    break_even, breaks_even = None, None
    if api_usd_per_million not in (None, ""):
        try:
            api = _number("API price ($ per M tokens)", api_usd_per_million, 0.0, inclusive=False)
        except ValueError as exc:  # a 0 refused the whole form, while a 0 throughput only leaves its mode out
            raise ValueError(f"{exc} (leave it empty for no comparison with an API)") from None
        break_even = cost / api
        if not math.isfinite(break_even):  # 1e-320 $ per M tokens: the message blamed the price per GPU-hour
            raise ValueError(f"API price ($ per M tokens) {api:g} is too small to compare with: the break-even "
                             "volume is beyond what can be computed (leave it empty for no comparison)")
        breaks_even = break_even <= tokens / 1e6
    if not (math.isfinite(tokens) and math.isfinite(per_million)):  # the cost and break-even are checked above
        raise ValueError(beyond)
    return CostLine(mode, tps, tokens, cost, per_million, break_even, breaks_even)


def cost_table(throughputs: dict[str, float | None], usd_per_gpu_hour, gpus, utilisation,
               api_usd_per_million=None) -> list[CostLine]:
    """Cost lines for every mode with a throughput (modes left empty or 0 are skipped)."""
    lines = [cost_line(mode, tps, usd_per_gpu_hour, gpus, utilisation, api_usd_per_million)
             for mode, tps in throughputs.items() if tps not in (None, "", 0, 0.0)]
    if not lines:
        raise ValueError("no throughput given (an empty or 0 field leaves its mode out): run the Race panel or "
                         "type tokens/s for at least one mode")
    return lines
