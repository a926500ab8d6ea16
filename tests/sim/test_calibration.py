"""Each figure the model is calibrated with is still stated, verbatim, where the page says."""

import re
from pathlib import Path

import pytest
from cachefleet.sim.calibration import FIGURES, Figure

REPOSITORY = Path(__file__).resolve().parents[2]


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.mark.parametrize("figure", FIGURES, ids=lambda figure: figure.name)
def test_the_quoted_document_states_the_figure(figure: Figure) -> None:
    document = (REPOSITORY / figure.document).resolve()
    if not document.is_relative_to(REPOSITORY) and not document.exists():
        # ../shared/DESIGN.md sits beside the repository on the project's machines only.
        pytest.skip(f"{figure.document} is not beside this checkout")
    assert _normalised(figure.quote) in _normalised(document.read_text(encoding="utf-8"))


def test_each_value_appears_in_its_quote_or_is_derived_from_it() -> None:
    # The quote must carry the number itself (as written there), so a changed value is caught.
    for figure in FIGURES:
        written = {
            f"{figure.value:g}",
            f"{figure.value:,.0f}",
            f"{figure.value:.2f}",
            f"{figure.value / 1000:g}k",
            f"{figure.value * 100:g}%",
        }
        assert any(form in figure.quote for form in written), figure.name
