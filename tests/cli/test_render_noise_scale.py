"""The noise scale on the terminal: beside the target batch in the closing panel, both points and
the cost in the smoke section."""

from __future__ import annotations

from rich.console import Console

from lbconvert.cli.render_smoke import render_smoke
from lbconvert.cli.render_summary import render_summary
from tests.helpers import make_result
from tests.helpers import noise_measurement as measurement
from tests.helpers import smoke_result as _result


def _text(render, *args) -> str:
    console = Console(record=True, width=400, color_system=None)
    render(*args, console)
    return " ".join(console.export_text().split())


def test_summary_panel_puts_the_line_under_the_batch():
    result = make_result(smoke=True)
    result.smoke.noise_scale = measurement()
    text = _text(render_summary, result, None)
    assert "noise scale B_simple ≈ 310 ± 40" in text
    assert text.index("128 → 8192") < text.index("noise scale") < text.index("learning rate")
    assert "target 8192 is 26× it" in text and "synthetic data" in text and "--data" in text
    result.smoke.noise_scale = None
    assert "B_simple" not in _text(render_summary, result, None)


def test_smoke_section_shows_every_point_and_the_cost():
    smoke = _result([])
    smoke.noise_scale = measurement(b_simple=None, stderr=None)
    text = _text(render_smoke, smoke)
    assert "Noise scale B_simple (McCandlish et al. 2018) at the original weights" in text
    assert "init (update 0): 120 ± 15" in text
    assert "end of the original arm (update 96): not resolved" in text
    assert "512 extra passes of 2, 3s" in text
