"""Each figure the model is calibrated with is still stated, verbatim, where the page says, and
the simulator's documentation gives its current value."""

import re
from pathlib import Path

import pytest
from cachefleet.sim.calibration import FIGURE, FIGURES, Figure

REPOSITORY = Path(__file__).resolve().parents[2]
SIM = REPOSITORY / "sidecar-image" / "cachefleet" / "sim"


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _written_forms(figure: Figure) -> set[str]:
    """The ways a document may write the figure's value. A form with no significant digit
    ("0", "0.00" for a small value) would match almost any text, so it does not count."""
    forms = {
        f"{figure.value:g}",
        f"{figure.value:,.0f}",
        f"{figure.value:.2f}",
        f"{figure.value / 1000:g}k",
        f"{figure.value * 100:g}%",
    }
    return {form for form in forms if re.search(r"[1-9]", form)}


@pytest.mark.parametrize("figure", FIGURES, ids=lambda figure: figure.name)
def test_the_quoted_document_states_the_figure(figure: Figure) -> None:
    document = (REPOSITORY / figure.document).resolve()
    assert document.is_relative_to(REPOSITORY), f"{figure.document} is outside the repository"
    assert _normalised(figure.quote) in _normalised(document.read_text(encoding="utf-8"))


def test_each_value_appears_in_its_quote_or_is_derived_from_it() -> None:
    # The quote must carry the number itself (as written there), so a changed value is caught.
    for figure in FIGURES:
        assert any(form in figure.quote for form in _written_forms(figure)), figure.name


def test_the_documentation_gives_each_figures_current_value() -> None:
    # docs/simulator.md's table names each figure; its row must carry the value the model uses,
    # so a re-measured figure cannot leave the documentation behind.
    text = (REPOSITORY / "docs" / "simulator.md").read_text(encoding="utf-8")
    section = text.split("## Where the figures come from", 1)[1].split("\n## ", 1)[0]
    for figure in FIGURES:
        rows = [line for line in section.splitlines() if f"`{figure.name}`" in line]
        assert len(rows) == 1, f"{figure.name}: {len(rows)} rows in docs/simulator.md"
        assert any(form in rows[0] for form in _written_forms(figure)), figure.name
        assert f"| {figure.role}" in rows[0], f"{figure.name} is an {figure.role}"


def test_the_page_names_only_figures_that_exist() -> None:
    page = (SIM / "page" / "template.html").read_text(encoding="utf-8")
    script = (SIM / "page" / "app.js").read_text(encoding="utf-8")
    named = set(re.findall(r'data-figure="([a-z0-9_]+)"', page))
    named |= set(re.findall(r'figure\("([a-z0-9_]+)"\)', script))
    assert named, "the page's notes quote no figure"
    assert named <= set(FIGURE), named - set(FIGURE)
