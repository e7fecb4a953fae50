"""The findings report and the results table as pages a person opens: figures embedded, verdicts
coloured, and, in headless Chromium, every image loaded and no console error."""

import re

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from browser import find_chromium, view_page  # noqa: E402

from codesift.errors import CodesiftError  # noqa: E402
from codesift.plots import plot_effect_intervals, plot_results_table  # noqa: E402
from codesift.report_page import write_report_page  # noqa: E402

needs_chromium = pytest.mark.skipif(
    find_chromium() is None, reason="no Chromium here (Debian: apt-get install chromium; .ci/run installs it)"
)


@pytest.fixture
def report(tmp_path):
    """A report shaped as analysis writes it: report.md beside report/figures/, a findings table."""
    figures = tmp_path / "report" / "figures"
    figures.mkdir(parents=True)
    plot_effect_intervals({"humaneval": (0.36, 0.30, 0.41), "mbpp": (0.32, 0.27, 0.38)},
                          "Spearman between checkpoints", path=figures / "stages.png")  # fmt: skip
    summary = {"random": {"vs_random/loss/humaneval/report": (None, None), "seeds": [1, 2, 3]},
               "influence_mean": {"vs_random/loss/humaneval/report": (-0.18, 0.04), "seeds": [1, 2, 3]}}  # fmt: skip
    plot_results_table(summary, ["humaneval"], figures / "arms.png")
    (tmp_path / "report.md").write_text(
        "# Findings on the tiny recipe\n\n"
        "| finding | paper | tiny run | agrees? |\n|---|---|---|---|\n"
        "| stages vary | they vary | 0.36 [0.30, 0.41] | yes |\n"
        "| extremes stable | stable | margin 0.02 [-0.05, 0.09] | no |\n"
        "| JavaScript | helps | +1.50 [-0.05, 3.32] | unclear |\n\n"
        "![stages](report/figures/stages.png)\n\n*Figure.* Spearman between checkpoints.\n\n"
        "![arms](report/figures/arms.png)\n\n*Figure.* The arms against random.\n"
    )
    return tmp_path / "report.md"


def test_the_page_embeds_every_figure_and_marks_each_verdict(report):
    page = write_report_page(report)
    text = page.read_text()
    assert page == report.with_suffix(".html") and "<title>Findings on the tiny recipe</title>" in text
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', text)) == 2 and 'src="report/' not in text
    assert re.findall(r'class="verdict verdict-(\w+)"', text) == ["yes", "no", "unclear"]


def test_a_missing_figure_is_an_error_not_a_broken_picture(report):
    (report.parent / "report" / "figures" / "arms.png").unlink()
    with pytest.raises(CodesiftError, match="arms.png"):
        write_report_page(report)
    assert not report.with_suffix(".html").exists()


@needs_chromium
def test_the_page_opens_in_chromium_with_every_image_loaded(report, tmp_path):
    view = view_page(write_report_page(report), screenshot=tmp_path / "page.png")
    assert view.title == "Findings on the tiny recipe"
    assert len(view.images) == 2 and all(i["complete"] and i["width"] > 300 for i in view.images), view.images
    assert view.console_errors == []
    colours = {cell["text"]: cell["background"] for cell in view.verdict_cells}
    assert len(set(colours.values())) == 3, colours  # yes, no and unclear look different
    assert view.screenshot.stat().st_size > 20_000  # a page with two figures, not a blank one


@needs_chromium
def test_the_browser_check_sees_a_broken_image_and_a_console_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<html><head><title>t</title></head><body><img src="missing.png">'
                    "<script>console.error('boom')</script></body></html>")  # fmt: skip
    view = view_page(page)
    assert view.images and view.images[0]["width"] == 0
    assert any("boom" in error for error in view.console_errors)
