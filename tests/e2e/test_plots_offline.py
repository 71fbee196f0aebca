"""`dvc plots show` and `dvc plots diff` pages drawn in a real browser with no network.

A finished test project (tiny images, a short run: a copy of tests/e2e/conftest.py's `reproduced_project`,
committed) writes its plots page through the committed template
(.dvc/config: plots.html_template → plots_html/index.html, which loads the Vega copies in plots_html/vendor/).
Headless Chromium, with every network access blocked (tests/browser.py), opens it; each Vega view must have
drawn its data marks onto a non-blank canvas, the console must hold no error, and the page must have
requested nothing but files. The same page with DVC's own CDN script tags, in the same browser, draws
nothing: the blocking is real and the checks can fail. Screenshots are written to the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests import browser
from toolkit.project import Reproduced, copy_project, dvc

pytestmark = pytest.mark.skipif(
    shutil.which(browser.CHROMIUM) is None,
    reason="Chromium is not installed (Debian's package `chromium`; .ci/run installs it with apt-get where it can)",
)

PLOT_KINDS = ("metrics/curves", "metrics/plots/confusion", "metrics/plots/roc")

# Runs before the page's own scripts: keeps the promise of every vegaEmbed call the page makes.
RECORD_EMBEDS = """
window.__embeds = [];
Object.defineProperty(window, "vegaEmbed", {
  configurable: true,
  get() { return undefined; },
  set(embed) {
    const recorded = function (element, spec, options) {
      const done = embed(element, spec, options);
      window.__embeds.push({ element, done });
      return done;
    };
    Object.assign(recorded, embed);
    Object.defineProperty(window, "vegaEmbed", { value: recorded, writable: true, configurable: true });
  },
});
"""

# Per vegaEmbed call: did its view render, how many data items (marks with role "mark", not axes or legends)
# its scenegraph holds, and how many of its canvas' pixels are not transparent.
DRAWN = """
(async () => {
  const drawn = [];
  for (const { element, done } of window.__embeds || []) {
    try {
      const { view } = await done;
      await view.runAsync();
      let marks = 0;
      const visit = (mark) => {
        if (mark.role === "mark") marks += mark.items.length;
        for (const item of mark.items || []) for (const child of item.items || []) visit(child);
      };
      visit(view.scenegraph().root);
      const container = document.getElementById(String(element).slice(1));
      const canvas = container && container.querySelector("canvas");
      let inked = 0;
      if (canvas) {
        const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked += 1;
      }
      drawn.push({ element: String(element), marks, inked, canvas: Boolean(canvas) });
    } catch (error) {
      drawn.push({ element: String(element), error: String(error) });
    }
  }
  return drawn;
})()
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, reproduced_project: Reproduced) -> Path:
    """Every kind of plot (curves, confusion, reliability, ROC) for two losses on both label sets, committed."""
    return copy_project(reproduced_project.repo, tmp_path_factory.mktemp("plots") / "project")


def declared_plots(page: Path) -> list[str]:
    """The elements the page's own scripts embed a plot into (DVC writes one `vegaEmbed('#id', spec)` each)."""
    return re.findall(r"vegaEmbed\('(#[^']+)'", page.read_text())


async def render(url: str, profile: Path, screenshot: Path) -> tuple[list[dict[str, Any]], browser.PageLog]:
    async with browser.offline_page(profile) as page:
        await page.open(url, before_scripts=RECORD_EMBEDS)
        async with asyncio.timeout(60):
            result = await page.evaluate(DRAWN)
        await page.screenshot(screenshot)
        return result, page.log


def assert_every_plot_drew(page: Path, drawn: list[dict[str, Any]], log: browser.PageLog) -> None:
    declared = declared_plots(page)
    assert len(declared) >= len(PLOT_KINDS), declared
    assert sorted(plot["element"] for plot in drawn) == sorted(declared), drawn
    for plot in drawn:
        assert "error" not in plot, plot
        assert plot["canvas"] and plot["marks"] > 0 and plot["inked"] > 0, plot
    assert log.errors == [], log.errors
    assert all(url.startswith("file://") for url in log.requests), log.requests  # nothing from a network


def test_plots_show_draws_every_plot_offline(finished: Path, tmp_path: Path) -> None:
    output = dvc(finished, "plots", "show").stdout
    page = finished / "dvc_plots" / "index.html"
    html = page.read_text()
    assert "cdn.jsdelivr.net" not in html and "../plots_html/vendor/vega.min.js" in html, output
    assert all(kind in html for kind in PLOT_KINDS)
    screenshot = tmp_path / "plots_show.png"
    drawn, log = asyncio.run(render(page.resolve().as_uri(), tmp_path / "profile", screenshot))
    assert_every_plot_drew(page, drawn, log)
    print(f"screenshot: {screenshot}")


def test_plots_diff_draws_every_plot_offline(finished: Path, tmp_path: Path) -> None:
    dvc(finished, "plots", "diff", "HEAD")  # the workspace against the committed results: two revisions
    page = finished / "dvc_plots" / "index.html"
    html = page.read_text()
    assert "cdn.jsdelivr.net" not in html and '"rev": "HEAD"' in html
    screenshot = tmp_path / "plots_diff.png"
    drawn, log = asyncio.run(render(page.resolve().as_uri(), tmp_path / "profile", screenshot))
    assert_every_plot_drew(page, drawn, log)
    print(f"screenshot: {screenshot}")


def test_dvc_default_cdn_page_draws_nothing_in_that_browser(finished: Path, tmp_path: Path) -> None:
    """The control: DVC's own script tags (cdn.jsdelivr.net) in place of the vendored ones."""
    from dvc_render.vega import VegaRenderer

    dvc(finished, "plots", "show")
    page = finished / "dvc_plots" / "index.html"
    html = re.sub(r'\s*<script src="\.\./plots_html/vendor/[^"]+"></script>', "", page.read_text())
    cdn_page = page.with_name("cdn.html")
    cdn_page.write_text(html.replace("</head>", f"{VegaRenderer.SCRIPTS}</head>", 1))
    drawn, log = asyncio.run(render(cdn_page.resolve().as_uri(), tmp_path / "profile", tmp_path / "cdn.png"))
    cdn_urls = re.findall(r'src="([^"]+)"', VegaRenderer.SCRIPTS)
    assert cdn_urls and all(url in log.requests for url in cdn_urls), log.requests  # tried, and
    assert drawn == [] and len(declared_plots(cdn_page)) >= len(PLOT_KINDS), drawn  # nothing drew
    assert any("vegaEmbed is not" in error for error in log.errors), log.errors  # defined / a function
