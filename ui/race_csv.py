"""The Race's numbers as rows (RACE_CSV_FIELDS), every digit kept, and as the CSV its panel offers for download
(the Sweep offers its grid the same way)."""

from __future__ import annotations


RACE_CSV_FIELDS = ("mode", "tokens_per_s", "ratio_vs_ar", "tokens_per_s_low", "tokens_per_s_high", "total_s",
                   "time_to_first_token_s", "new_tokens", "nfe", "tokens_per_pass", "mean_acceptance_length",
                   "agreement_with_ar", "disturbed", "error", "measured", "heal", "healed")


def race_rows(results: list[dict], label: str, heal: bool = True, healed: str = "") -> list[dict]:
    """A Race's cards as rows of numbers (RACE_CSV_FIELDS), every digit kept, for its CSV. heal: the Race's healing
    checkbox; healed: the text of the prompt's last token that every mode chose again (token healing), "" for none
    (the checkbox off, or nothing to heal), as `generate --json` says it."""
    ar = next((r.get("tokens_per_s") for r in results if r["mode"] == "ar"), None)
    rows = []
    for r in results:
        tps, n, nfe = r.get("tokens_per_s"), len(r.get("tokens") or []), r.get("nfe")
        low, high = r.get("tokens_per_s_range") or (None, None)
        rows.append({"mode": r["mode"], "tokens_per_s": tps, "ratio_vs_ar": tps / ar if tps and ar else None,
                     "tokens_per_s_low": low, "tokens_per_s_high": high, "total_s": r.get("total_s"),
                     "time_to_first_token_s": r.get("ttft_s"), "new_tokens": n, "nfe": nfe,
                     "tokens_per_pass": n / nfe if nfe else None,  # AR makes no denoiser pass
                     "mean_acceptance_length": r.get("mean_acceptance_length"),
                     "agreement_with_ar": r.get("agreement"), "disturbed": r.get("disturbed"),
                     "error": r.get("error"), "measured": label, "heal": heal, "healed": healed})
    return rows


def race_csv_text(rows: list[dict]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=RACE_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if row.get(k) is None else row.get(k)) for k in RACE_CSV_FIELDS} for row in rows)
    return out.getvalue()
