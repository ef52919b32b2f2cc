"""Image comparison of the three plot kinds against baseline PNGs in tests/baseline/.

The figures are drawn from the small fixed database of
:func:`plot_fixtures.fill_two_datasets` (built through the public Store API)
in hsbench's fixed plot style (DejaVu Sans as matplotlib ships it, unhinted
glyphs, page width, 80 dpi). A figure matches its baseline when

* the whole image is within ``WHOLE_RMS`` (matplotlib's ``compare_images``
  RMS on 0-255 levels): a panel moved by half a percent of the figure width
  is RMS > 10, so it fails; and
* every 48 x 48 px window (stride 24) is within ``WINDOW_RMS``: one lost
  label is RMS > 5 in the window that holds it, so it fails, while
  anti-aliasing noise (grey levels +-8 on glyph edges, a 1.1 gamma) stays
  below 4.

Font hinting cannot move a label here: the style renders glyphs unhinted
(``text.hinting: none``), which makes text extents independent of the
FreeType build. The perturbation tests at the bottom prove the tolerances
catch a moved panel and a lost label and pass raster noise.

Regenerate the baselines (after an intended change; look at them first):
``HSBENCH_REGEN_BASELINES=1 pytest tests/test_plot_images.py``.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.testing.compare import calculate_rms, compare_images
from PIL import Image

from hsbench.reporting.plots import PLOT_KINDS, make_figure, plot_style, save_figure
from hsbench.store import Store
from plot_fixtures import fill_two_datasets

BASELINE_DIR = Path(__file__).parent / "baseline"
DPI = 80
WIDTH = "page"
WHOLE_RMS = 2.0
WINDOW_RMS = 4.5
WINDOW, STRIDE = 48, 24
REGEN = os.environ.get("HSBENCH_REGEN_BASELINES") == "1"


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(float)


def window_rms(expected: Path, actual: Path) -> float:
    """Largest RMS over 48 x 48 px windows (stride 24) of two same-size images."""
    a, b = _pixels(expected), _pixels(actual)
    assert a.shape == b.shape, f"image sizes differ: {a.shape} vs {b.shape}"
    h, w = a.shape[:2]
    worst = 0.0
    for y in range(0, max(1, h - WINDOW + STRIDE), STRIDE):
        for x in range(0, max(1, w - WINDOW + STRIDE), STRIDE):
            worst = max(worst, calculate_rms(a[y:y + WINDOW, x:x + WINDOW],
                                             b[y:y + WINDOW, x:x + WINDOW]))
    return worst


def mismatch(expected: Path, actual: Path) -> str | None:
    """None when ``actual`` matches ``expected`` within both tolerances; else why not."""
    err = compare_images(str(expected), str(actual), tol=WHOLE_RMS)
    if err is not None:
        return err
    worst = window_rms(expected, actual)
    if worst > WINDOW_RMS:
        return f"a 48x48 px window differs by RMS {worst:.2f} > {WINDOW_RMS}"
    return None


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('plotdb') / 'hs.db'}"
    with Store.open(url) as st:
        fill_two_datasets(st)
    st = Store.open(url, create=False)
    yield st
    st.close()


@pytest.fixture(scope="module")
def figures(store):
    """kind -> its figure (drawn once per module; the style must be active to save)."""
    with plot_style(WIDTH):
        return {kind: make_figure(kind, store, width=WIDTH) for kind in PLOT_KINDS}


def _save(fig, path: Path) -> Path:
    with plot_style(WIDTH):
        return save_figure(fig, path, dpi=DPI)


@pytest.mark.parametrize("kind", list(PLOT_KINDS))
def test_plot_matches_baseline(figures, kind, tmp_path):
    actual = _save(figures[kind], tmp_path / f"{kind}.png")
    baseline = BASELINE_DIR / f"{kind}.png"
    if REGEN:
        BASELINE_DIR.mkdir(exist_ok=True)
        shutil.copyfile(actual, baseline)
    assert baseline.is_file(), f"no baseline {baseline}; see the module docstring to make it"
    why = mismatch(baseline, actual)
    assert why is None, why


def test_tolerance_catches_a_moved_panel(figures, tmp_path):
    fig = figures["fps-vs-miou"]
    base = _save(fig, tmp_path / "base.png")
    ax = fig.axes[1]
    box = ax.get_position()
    try:
        ax.set_position([box.x0 + 0.005, box.y0, box.width, box.height])
        moved = _save(fig, tmp_path / "moved.png")
    finally:
        ax.set_position(box)
    assert mismatch(base, moved) is not None
    assert compare_images(str(base), str(moved), tol=WHOLE_RMS) is not None


@pytest.mark.parametrize("kind", list(PLOT_KINDS))
def test_tolerance_catches_a_lost_label(figures, kind, tmp_path):
    fig = figures[kind]
    base = _save(fig, tmp_path / "base.png")
    labels = [t for ax in fig.axes for t in ax.texts if t.get_text().strip()]
    smallest = min(labels, key=lambda t: (len(t.get_text()), t.get_text()))
    smallest.set_visible(False)
    try:
        lost = _save(fig, tmp_path / "lost.png")
    finally:
        smallest.set_visible(True)
    why = mismatch(base, lost)
    assert why is not None, f"hiding label {smallest.get_text()!r} went unnoticed"


def test_tolerance_passes_raster_noise(figures, tmp_path):
    base = _save(figures["gmacs-vs-miou"], tmp_path / "base.png")
    a = _pixels(base)
    rng = np.random.default_rng(0)
    edge = (a > 0) & (a < 255)  # anti-aliased pixels: glyph and line edges
    for name, noisy in (
        ("edges", np.clip(a + edge * rng.integers(-8, 9, a.shape), 0, 255)),
        ("gamma", np.round(255.0 * (a / 255.0) ** 1.1)),
    ):
        path = tmp_path / f"{name}.png"
        Image.fromarray(noisy.astype(np.uint8)).save(path)
        assert mismatch(base, path) is None, name


def _boxes(fig):
    """(axes, label text, display bbox) of every visible point label."""
    renderer = fig.canvas.get_renderer()
    return [(ax, t.get_text(), t.get_window_extent(renderer))
            for ax in fig.axes for t in ax.texts if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("kind", list(PLOT_KINDS))
def test_point_labels_do_not_overlap_and_stay_in_their_panel(figures, kind):
    with plot_style(WIDTH):  # text extents depend on the style's (unhinted) glyphs
        boxes = _boxes(figures[kind])
        frames = {ax: ax.get_window_extent(figures[kind].canvas.get_renderer())
                  for ax in figures[kind].axes}
    assert len(boxes) > 10
    for ax, text, box in boxes:
        frame = frames[ax]
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 <= box.y1 <= frame.y1, text
    for (ax1, t1, b1), (ax2, t2, b2) in itertools.combinations(boxes, 2):
        if ax1 is ax2:
            assert not b1.overlaps(b2), f"{t1!r} overlaps {t2!r}"
