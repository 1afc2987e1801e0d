"""The Race's numbers as a CSV for download (ui.race_csv.race_rows / race_csv_text), as the Sweep offers its grid."""

import csv
import io
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pytest  # noqa: E402

from ui.handlers import Handlers  # noqa: E402
from ui.race_csv import RACE_CSV_FIELDS, race_csv_text, race_rows  # noqa: E402


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_a_race_downloads_as_a_csv_of_every_card(engine):
    handlers = Handlers(engine)
    with pytest.warns(UserWarning, match="No Race run yet"):
        assert handlers.race_csv(None) == gr.skip()  # the file box stays
    *_, (html, _, measured) = list(handlers.race("def f(x):", ["diffusion", "speculative"], 0.8, 4, 4, 8, 2))
    saved = handlers.race_csv(measured)
    rows = read_csv(open(saved.value["path"], encoding="utf-8").read())
    assert [r["mode"] for r in rows] == ["ar", "diffusion", "speculative"] and list(rows[0]) == list(RACE_CSV_FIELDS)
    by_mode = {r["mode"]: r for r in rows}
    assert float(by_mode["ar"]["ratio_vs_ar"]) == 1.0 and by_mode["ar"]["tokens_per_pass"] == ""  # no pass in AR
    for mode in ("diffusion", "speculative"):
        r = by_mode[mode]
        tps = measured["tokens_per_s"][mode]
        assert float(r["tokens_per_s"]) == tps  # every digit, not the card's rounding
        assert float(r["ratio_vs_ar"]) == pytest.approx(tps / measured["tokens_per_s"]["ar"])
        assert float(r["tokens_per_s_low"]) <= tps <= float(r["tokens_per_s_high"])  # two timed runs: a spread
        assert int(r["new_tokens"]) == 8 and float(r["tokens_per_pass"]) == pytest.approx(8 / int(r["nfe"]))
        assert 0.0 <= float(r["agreement_with_ar"]) <= 1.0 and r["measured"].startswith("measured on this machine")
    assert by_mode["speculative"]["mean_acceptance_length"] != "" and by_mode["diffusion"]["mean_acceptance_length"] == ""


def test_a_stopped_race_keeps_the_rows_of_the_modes_it_timed(engine):
    handlers = Handlers(engine)
    updates = list(handlers.race("def f(x):", ["diffusion", "mock_ar"], 0.8, 4, 4, 6, 1))
    # the last measured state sent before mock-AR's timing: what a Stop there leaves in the session
    during = [m for *_, m in updates if isinstance(m, dict) and len(m.get("race", [])) == 2][0]
    rows = read_csv(open(handlers.race_csv(during).value["path"], encoding="utf-8").read())
    assert [r["mode"] for r in rows] == ["ar", "diffusion"] and rows[1]["agreement_with_ar"] == ""  # known at the end


def test_race_rows_of_a_mode_that_failed_say_why():
    rows = race_rows([{"mode": "ar", "tokens": [1, 2], "tokens_per_s": 10.0, "nfe": 0},
                      {"mode": "speculative", "tokens": [], "error": "speculative mode is not available"}], "label")
    assert rows[1]["tokens_per_s"] is None and rows[1]["ratio_vs_ar"] is None
    parsed = read_csv(race_csv_text(rows))
    assert parsed[1]["error"] == "speculative mode is not available" and parsed[1]["tokens_per_s"] == ""


def test_a_disk_that_refuses_the_file_leaves_the_file_box_and_says_what_stays(engine, tmp_path, monkeypatch):
    handlers = Handlers(engine)
    *_, (_, _, measured) = list(handlers.race("def f(x):", [], 0.8, 4, 4, 4, 1))
    monkeypatch.setattr(handlers, "_csv_folder", lambda prefix: tmp_path / "gone")  # a folder removed meanwhile
    with pytest.warns(UserWarning, match="The file could not be saved .*: the cards stay; copy them instead"):
        assert handlers.race_csv(measured) == gr.skip()
    record = list(handlers.generate("x = ", "ar", 0.8, 4.0, 4.0, 3.0, 0.0, 0, "step"))[-1][3]
    with pytest.warns(UserWarning, match="the board and its recording stay"):
        assert handlers.save_trace(record) == gr.skip()
