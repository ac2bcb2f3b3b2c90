"""Figures for examiners and benchmarks (matplotlib, no GUI, no global state).

Every function draws on a :class:`matplotlib.figure.Figure` made here (never
``pyplot``), so the library works in servers, threads and notebooks alike
and never changes the caller's matplotlib backend.

Panels take an ``Axes`` and draw one thing; composites lay panels out:

* cartridge cases: :func:`plot_surface` (+ :func:`add_scale_bar`,
  :func:`draw_cells`), :func:`plot_overlay`,
  :func:`plot_correlation_surface`, :func:`plot_rotation_profile`,
  :func:`plot_cell_displacements`; composite :func:`cartridge_lead_figure`;
* bullets: :func:`plot_land_scores`, :func:`plot_signature_pair`;
  composite :func:`bullet_lead_figure` (input: :class:`BulletEvidence`);
* benchmarks: :func:`roc_curve`, :func:`roc_figure`,
  :func:`score_histogram_figure`.

Colours are readable in grey and by colour-blind readers: surfaces in grey
(missing data white), correlation maps in cividis (Nuñez et al. 2018),
categories in the Okabe-Ito blue and orange, always doubled by a line style
or marker (congruent cells solid blue, other cells dashed orange), never red
against green. Every surface image has a scale bar in µm.

References
----------
J. R. Nuñez, C. R. Anderton, R. S. Renslow, "Optimizing colormaps with
consideration for color vision deficiency to enable accurate interpretation
of scientific data", PLoS ONE 13(7):e0199239, 2018. doi:10.1371/journal.pone.0199239
M. Okabe, K. Ito, "Color universal design (CUD): how to make figures and
presentations that are friendly to colorblind people", 2008.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np

from ._evidence import BulletEvidence, CartridgeEvidence, CellOutline

__all__ = [
    "BLUE", "ORANGE", "GREY",
    "new_figure", "figure_png", "nice_length_um",
    "plot_surface", "add_scale_bar", "draw_cells", "plot_overlay", "plot_correlation_surface",
    "plot_rotation_profile", "plot_cell_displacements", "cartridge_lead_figure", "query_figure",
    "plot_land_scores", "plot_signature_pair", "bullet_lead_figure",
    "roc_curve", "roc_figure", "score_histogram_figure",
]

#: Okabe-Ito blue: congruent cells, same-firearm scores, the query in overlays.
BLUE = "#0072B2"
#: Okabe-Ito orange: other cells, different-firearm scores, the lead in overlays.
ORANGE = "#E69F00"
#: Neutral grey: cells below the CCF threshold, reference lines.
GREY = "#7F7F7F"

_SURFACE_CLIP = 3.0  # unit-RMS surfaces shown over +-3 RMS


# ---------------------------------------------------------------- basics


def new_figure(width_in: float, height_in: float, *, dpi: float = 100.0):
    """A matplotlib Figure on the Agg canvas (no pyplot, no GUI)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig, *, palette: bool = True) -> bytes:
    """Render a figure to PNG bytes at its own size and dpi.

    Draws with unhinted text (set through ``matplotlib.rc_context``, which
    is process-wide while it lasts: do not draw other figures in other
    threads at the same time).

    Parameters
    ----------
    fig : Figure
    palette : bool
        Quantise to a 256-colour palette: about a third of the size, and
        the figures use few colours beyond their grey and cividis ramps.
    """
    import matplotlib
    from PIL import Image

    # unhinted glyphs: a seventh less drawing time, no visible difference at these sizes
    with matplotlib.rc_context({"text.hinting": "no_hinting"}):
        fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    img = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    if palette:
        img = img.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def nice_length_um(span_um: float, fraction: float = 0.2) -> float:
    """A round length (1, 2 or 5 times a power of ten) near ``fraction`` of ``span_um``."""
    if not span_um > 0:
        raise ValueError("span_um must be positive")
    target = span_um * fraction
    e = 10.0 ** math.floor(math.log10(target))
    best = min((m * e for m in (1, 2, 5, 10)), key=lambda v: abs(math.log(v / target)))
    return float(best)


def _fmt_um(v: float) -> str:
    if v >= 1000 and v % 1000 == 0:
        return f"{v / 1000:g} mm"
    return f"{v:g} µm"


def _picture_axes(ax, title: str | None) -> None:
    """An axes that shows a picture: no ticks, no frame, an optional title."""
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)


def _surface_cmap():
    from matplotlib.colors import ListedColormap
    from matplotlib import colormaps

    # grey from black to light grey, so white stays free for missing data
    return ListedColormap(colormaps["gray"](np.linspace(0.0, 0.85, 256)), name="ibin-surface").with_extremes(bad="white")


# ---------------------------------------------------------------- surfaces


def plot_surface(ax, values: np.ndarray, pixel_um: float, *, title: str | None = None,
                 scale_bar: bool = True, clip: float = _SURFACE_CLIP):
    """Show a prepared surface in grey (missing data white) with a scale bar.

    Parameters
    ----------
    ax : Axes
    values : ndarray (rows, cols)
        Heights (unit RMS for prepared surfaces), NaN = missing.
    pixel_um : float
        Grid spacing: the image is drawn in pixel units, one data unit per
        grid point, and the scale bar is ``length_um / pixel_um`` long.
    title : str, optional
    scale_bar : bool
    clip : float
        Values beyond ``+-clip`` saturate.

    Returns
    -------
    AxesImage
    """
    v = np.asarray(values, dtype=np.float32)
    im = ax.imshow(np.ma.masked_invalid(v), cmap=_surface_cmap(), vmin=-clip, vmax=clip,
                   interpolation="nearest", origin="upper")
    _picture_axes(ax, title)
    if scale_bar:
        add_scale_bar(ax, pixel_um, width_px=v.shape[1], height_px=v.shape[0])
    return im


def add_scale_bar(ax, pixel_um: float, *, length_um: float | None = None, width_px: int | None = None,
                  height_px: int | None = None, at: tuple[float, float] | None = None):
    """Draw a scale bar at the lower left of an image drawn in pixel units.

    Parameters
    ----------
    ax : Axes
        Showing an image with one data unit per pixel (``imshow`` default).
    pixel_um : float
        µm per pixel.
    length_um : float, optional
        Bar length; default a round length near a fifth of the width.
    width_px, height_px : int, optional
        Image size; default from the axes limits.
    at : (float, float), optional
        Data position (x, y) of the bar's lower left end; default inside
        the image's lower left corner.

    Returns
    -------
    (Rectangle, Text)
        The bar (gid ``"scale-bar"``, width ``length_um / pixel_um`` data
        units) and its label (gid ``"scale-bar-label"``).
    """
    from matplotlib.patches import Rectangle

    if not pixel_um > 0:
        raise ValueError("pixel_um must be positive")
    x0, x1 = sorted(ax.get_xlim())
    y0, y1 = sorted(ax.get_ylim())
    w = width_px if width_px is not None else x1 - x0
    h = height_px if height_px is not None else y1 - y0
    L = length_um if length_um is not None else nice_length_um(w * pixel_um)
    n = L / pixel_um
    bar_h = max(h * 0.018, 1.0)
    left, bottom = (x0 + 0.05 * w, y1 - 0.06 * h) if at is None else at  # y grows downwards on images
    bar = Rectangle((left, bottom - bar_h), n, bar_h, facecolor="black", edgecolor="white", linewidth=1.0,
                    gid="scale-bar", zorder=5)
    ax.add_patch(bar)
    label = ax.text(left + n / 2.0, bottom - bar_h - 0.01 * h, _fmt_um(L), ha="center", va="bottom", fontsize=8,
                    color="black", gid="scale-bar-label", zorder=6,
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.85))
    return bar, label


def draw_cells(ax, cells: Sequence[CellOutline], pixel_um: float, *, labels: bool = True):
    """Outline CMC cells on an image drawn in pixel units.

    Congruent cells: solid blue outlines, labelled with their CCF in bold
    blue; the others: dashed orange outlines, labelled in plain dark
    orange. A white halo under the outlines and a light box under the
    labels keep both visible on any grey level.

    Returns
    -------
    (PolyCollection, PolyCollection)
        The congruent cells' outlines (gid ``"cells-congruent"``) and the
        others' (gid ``"cells-other"``), one path per cell.
    """
    from matplotlib.collections import PolyCollection

    polys = [np.asarray(c.corners_um) / pixel_um - 0.5 for c in cells]  # µm from the corner -> pixel centres
    yes = [p for p, c in zip(polys, cells) if c.congruent]
    no = [p for p, c in zip(polys, cells) if not c.congruent]
    ax.add_collection(PolyCollection(polys, closed=True, facecolors="none", edgecolors="white", linewidths=3.4,
                                     zorder=3), autolim=False)
    other = PolyCollection(no, closed=True, facecolors="none", edgecolors=ORANGE, linewidths=1.3,
                           linestyles=[(0, (3, 2))], zorder=3.1, gid="cells-other")
    congruent = PolyCollection(yes, closed=True, facecolors="none", edgecolors=BLUE, linewidths=1.7,
                               linestyles="solid", zorder=3.2, gid="cells-congruent")
    ax.add_collection(other, autolim=False)
    ax.add_collection(congruent, autolim=False)
    if labels:
        _number_labels(ax, [(c.centre_um[0] / pixel_um - 0.5, c.centre_um[1] / pixel_um - 0.5) for c in cells],
                       [_ccf_text(c.ccf) for c in cells], [c.congruent for c in cells])
    return congruent, other


def _ccf_text(v: float) -> str:
    if not np.isfinite(v):
        return "–"
    return f"{v:.2f}".replace("0.", ".", 1) if v >= 0 else f"{v:.1f}"


_LABEL_PATHS: dict = {}


def _label_path(text: str, bold: bool):
    """Outline of a short label (points, centred on the origin), cached: labels repeat."""
    key = (text, bold)
    p = _LABEL_PATHS.get(key)
    if p is None:
        from matplotlib.font_manager import FontProperties
        from matplotlib.textpath import TextPath
        from matplotlib.transforms import Affine2D

        tp = TextPath((0, 0), text, size=6.5, prop=FontProperties(weight="bold" if bold else "normal"))
        e = tp.get_extents()
        p = tp.transformed(Affine2D().translate(-(e.x0 + e.x1) / 2.0, -(e.y0 + e.y1) / 2.0))
        if len(_LABEL_PATHS) < 4096:
            _LABEL_PATHS[key] = p
    return p


def _number_labels(ax, xy, texts, emphasis) -> None:
    """Short labels at data positions, drawn as two path collections (a white halo, then the glyphs).

    Many small labels drawn this way cost a fraction of as many Text
    artists (each of which lays out and rasterises its glyphs anew); the
    collection has gid ``"cell-ccf"`` and one path per label.
    """
    from matplotlib.collections import PathCollection
    from matplotlib.transforms import Affine2D

    if not texts:
        return
    paths = [_label_path(t, bool(b)) for t, b in zip(texts, emphasis)]
    points = Affine2D().scale(1.0 / 72.0) + ax.figure.dpi_scale_trans  # label size in points, at any dpi
    common = dict(offsets=np.asarray(xy, np.float64), offset_transform=ax.transData, transform=points, zorder=4)
    ax.add_collection(PathCollection(paths, facecolors="white", edgecolors="white", linewidths=2.4, **common),
                      autolim=False)
    colours = [BLUE if b else "#8a5a00" for b in emphasis]
    labels = PathCollection(paths, facecolors=colours, edgecolors="none", gid="cell-ccf", **common)
    labels.ibin_texts = tuple(texts)
    ax.add_collection(labels, autolim=False)


def plot_overlay(ax, query: np.ndarray, lead: np.ndarray, pixel_um: float, *, title: str | None = "overlay",
                 clip: float = 2.5, legend: bool = False, scale_bar: bool = True):
    """Both aligned surfaces in one image: blue where the query is higher, orange where the lead is.

    Where they agree the colour is grey (dark to light with the height), so
    matching marks read as grey texture and disagreement as colour. Where
    only one surface was measured: flat light grey; neither: white.

    Returns
    -------
    AxesImage
    """
    a = np.clip((np.asarray(query, np.float64) + clip) / (2 * clip), 0, 1)
    b = np.clip((np.asarray(lead, np.float64) + clip) / (2 * clip), 0, 1)
    ma, mb = np.isfinite(a), np.isfinite(b)
    rgb = np.ones(a.shape + (3,))
    rgb[ma ^ mb] = 0.86
    both = ma & mb
    rgb[both, 0] = b[both]
    rgb[both, 1] = 0.5 * (a[both] + b[both])
    rgb[both, 2] = a[both]
    im = ax.imshow(rgb, interpolation="nearest", origin="upper")
    _picture_axes(ax, title)
    if legend:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=(0, 0.5, 1), label="query higher"), Patch(color=(1, 0.5, 0), label="lead higher"),
                           Patch(color=(0.5, 0.5, 0.5), label="agree")],
                  loc="upper right", fontsize=6.5, framealpha=0.85, handlelength=1.0, borderpad=0.3)
    if scale_bar:
        add_scale_bar(ax, pixel_um, width_px=a.shape[1], height_px=a.shape[0])
    return im


# ---------------------------------------------------------------- correlation


def plot_correlation_surface(ax, shift_um: np.ndarray, correlation: np.ndarray, *, title: str | None = None,
                             colorbar: bool = True):
    """The correlation around the peak: CCF against the lead's translation (µm) from the reported alignment.

    Drawn in cividis with its colour bar; ``+`` marks the maximum, a ring
    the reported alignment (the centre). Axes in µm, y pointing down as on
    the surface images.

    Returns
    -------
    AxesImage
    """
    s = np.asarray(shift_um, np.float64)
    c = np.asarray(correlation, np.float64)
    h = (s[1] - s[0]) / 2.0 if len(s) > 1 else 0.5
    ext = (s[0] - h, s[-1] + h, s[-1] + h, s[0] - h)
    im = ax.imshow(np.ma.masked_invalid(c), cmap="cividis", extent=ext, origin="upper", interpolation="nearest")
    if np.isfinite(c).any():
        r, k = np.unravel_index(int(np.nanargmax(c)), c.shape)
        ax.plot([s[k]], [s[r]], marker="+", markersize=11, markeredgewidth=2.2, color="white", zorder=4)
        ax.plot([s[k]], [s[r]], marker="+", markersize=9, markeredgewidth=1.0, color="black", zorder=5, gid="peak")
    ax.plot([0], [0], marker="o", markersize=9, markerfacecolor="none", markeredgecolor="white", markeredgewidth=1.6,
            zorder=4, gid="reported")
    ax.set_xlabel("lead shift x (µm)", fontsize=8)
    ax.set_ylabel("lead shift y (µm)", fontsize=8)
    _few_ticks(ax)
    ax.set_title(title or "correlation around the peak", fontsize=10)
    if colorbar:
        from matplotlib.ticker import MaxNLocator

        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03, ticks=MaxNLocator(3))
        cb.ax.set_title("CCF", fontsize=8)
        cb.ax.tick_params(labelsize=7)
    return im


def plot_rotation_profile(ax, rotation_deg: np.ndarray, ccf: np.ndarray, *, reported_deg: float | None = None,
                          title: str | None = None):
    """Best correlation over translation at every rotation of the lead (full circle).

    ``ccf`` is the registration's sweep score (see
    :class:`CartridgeEvidence`); a true match shows one sharp peak at the
    reported rotation.

    Returns
    -------
    Line2D
    """
    (line,) = ax.plot(rotation_deg, ccf, color=BLUE, linewidth=1.3, gid="rotation-profile")
    if reported_deg is not None:
        ax.axvline(reported_deg, color=GREY, linestyle="--", linewidth=1.0)
        ax.text(reported_deg, 1.0, f" {reported_deg:.1f}°", transform=ax.get_xaxis_transform(), fontsize=7,
                va="top", ha="left", color="black")
    ax.set_xlim(-180, 180)
    ax.set_xticks([-180, 0, 180])
    ax.set_xlabel("lead rotation (°)", fontsize=8)
    ax.set_ylabel("sweep score", fontsize=8)
    _few_ticks(ax, x=False)
    ax.set_title(title or "correlation against rotation (50 µm grid)", fontsize=10)
    return line


def plot_cell_displacements(ax, cells, *, ccf_threshold: float, xy_threshold_um: float, search_um: float,
                            title: str | None = None, legend: bool = True):
    """Where each cell matched, relative to its registered position (the CMC congruence picture).

    Congruent cells: filled blue circles; cells above the CCF threshold but
    out of line: hollow orange squares; cells below it: grey crosses. The
    dashed square is the ``+-xy_threshold_um`` tolerance around the
    congruent cells' median.

    Parameters
    ----------
    cells : sequence of CellResult
    """
    from matplotlib.patches import Rectangle

    cells = list(cells)
    dx = np.array([c.dx_um for c in cells], np.float64)
    dy = np.array([c.dy_um for c in cells], np.float64)
    cg = np.array([c.congruent for c in cells], bool)
    hi = np.array([c.ccf >= ccf_threshold for c in cells], bool)
    if len(cells):
        ax.scatter(dx[~hi], dy[~hi], marker="x", s=22, color=GREY, linewidths=1.0, label=f"CCF < {ccf_threshold:g}")
        ax.scatter(dx[hi & ~cg], dy[hi & ~cg], marker="s", s=26, facecolors="none", edgecolors=ORANGE, linewidths=1.3,
                   label="out of line")
        ax.scatter(dx[cg], dy[cg], marker="o", s=26, color=BLUE, label="congruent", gid="congruent-cells")
    mx, my = (float(np.median(dx[cg])), float(np.median(dy[cg]))) if cg.any() else (0.0, 0.0)
    ax.add_patch(Rectangle((mx - xy_threshold_um, my - xy_threshold_um), 2 * xy_threshold_um, 2 * xy_threshold_um,
                           fill=False, linestyle="--", edgecolor="black", linewidth=0.9))
    lim = max(search_um, float(np.nanmax(np.abs(np.concatenate([dx, dy, [0.0]])))) * 1.05)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(lim, -lim)
    ax.set_aspect("equal")
    ax.axhline(0, color="#dddddd", linewidth=0.6, zorder=0)
    ax.axvline(0, color="#dddddd", linewidth=0.6, zorder=0)
    ax.set_xlabel("cell dx (µm)", fontsize=8)
    ax.set_ylabel("cell dy (µm)", fontsize=8)
    _few_ticks(ax)
    if legend:
        ax.legend(fontsize=6.5, loc="lower right", framealpha=0.85, handletextpad=0.3, borderpad=0.3)
    ax.set_title(title or f"cell positions: {int(cg.sum())} congruent of {len(cells)}", fontsize=10)


def _few_ticks(ax, *, x: bool = True, y: bool = True, n: int = 3) -> None:
    """At most ``n`` ticks per axis: tick labels are most of a panel's drawing time."""
    from matplotlib.ticker import MaxNLocator

    if x:
        ax.xaxis.set_major_locator(MaxNLocator(n))
    if y:
        ax.yaxis.set_major_locator(MaxNLocator(n))
    ax.tick_params(labelsize=7)


def _fit_cells(pixel_um: float, shape: tuple[int, int], axes, cells) -> tuple[float, float]:
    """Widen the image axes so that cells overhanging the surface's edges show whole, with room for a scale bar below.

    The same limits go to every axes; returns the left edge and the bottom
    (largest y) of the widened view.
    """
    x0, x1, y0, y1 = -0.5, shape[1] - 0.5, -0.5, shape[0] - 0.5
    for c in cells:
        xy = np.asarray(c.corners_um) / pixel_um - 0.5
        x0, x1 = min(x0, xy[:, 0].min() - 2), max(x1, xy[:, 0].max() + 2)
        y0, y1 = min(y0, xy[:, 1].min() - 2), max(y1, xy[:, 1].max() + 2)
    y1 += 0.09 * shape[0]
    for ax in axes:
        ax.set_xlim(x0, x1)
        ax.set_ylim(y1, y0)
    return x0, y1


def cartridge_key() -> str:
    """The key to the colours and markers of :func:`cartridge_lead_figure`, one line of text."""
    from ..correlate import CMCParams

    t = CMCParams().ccf_threshold
    return ("Cells: solid blue outline = congruent matching cell, dashed orange = not congruent; number = cell CCF. "
            "Overlay: blue = query higher, orange = lead higher, grey = agree.\nCell positions: "
            f"● congruent, □ CCF ≥ {t:g} out of line, × CCF < {t:g}. "
            "Surfaces band-passed 40–400 µm, ±3 RMS; white = not measured.")


def lead_title(ev: CartridgeEvidence, rank: int | None = None) -> str:
    """The title of a cartridge lead figure: lead, score, CMC counts both ways, CCF, alignment."""
    return _lead_title(ev, rank)


def _lead_title(ev: CartridgeEvidence, rank: int | None) -> str:
    r = ev.comparison
    head = f"Lead {rank}: " if rank is not None else ""
    return (f"{head}{ev.lead_id} against {ev.query_id} — score {r.score:.2f}, CMC {r.cmc} of {r.cells} "
            f"(query cells {r.cmc_ab.cmc}/{r.cmc_ab.cell_count}, lead cells {r.cmc_ba.cmc}/{r.cmc_ba.cell_count}), "
            f"CCF {r.ccf:.3f}; lead rotated {r.rotation_deg:.1f}°, shifted ({r.dx_um:.0f}, {r.dy_um:.0f}) µm")


def cartridge_lead_figure(ev: CartridgeEvidence, *, rank: int | None = None, title: str | None = None,
                          header: bool = True, width_in: float = 12.0, dpi: float = 100.0):
    """All pictures of one cartridge-case lead in one figure (2 x 3 panels).

    Top: the query with its cells, the lead aligned onto it with the cells
    where they matched (solid blue = congruent, dashed orange = not; CCF in
    each), the overlay. Bottom: the correlation surface around the peak,
    the rotation profile, the cell displacements.

    Parameters
    ----------
    ev : CartridgeEvidence
    rank : int, optional
        Shown in the title.
    title : str, optional
        Default: the lead, its score, CMC counts, CCF and alignment.
    header : bool
        Draw the title and the key to colours and markers. A page that
        shows them as text (the HTML report, the review page) leaves them
        out: long text is most of the drawing time of a figure.
    width_in, dpi : float

    Returns
    -------
    Figure
    """
    from ..correlate import CMCParams

    cmc = CMCParams()
    fig = new_figure(width_in, width_in * (0.7 if header else 0.64), dpi=dpi)
    gs = fig.add_gridspec(2, 3, left=0.03, right=0.985, top=0.885 if header else 0.96, bottom=0.07, wspace=0.28,
                          hspace=0.22, height_ratios=[1.2, 1.0])
    px = ev.pixel_um
    a1 = fig.add_subplot(gs[0, 0])
    plot_surface(a1, ev.query_surface, px, title=f"query {ev.query_id}: its cells", scale_bar=False)
    draw_cells(a1, ev.cells_query, px)
    a2 = fig.add_subplot(gs[0, 1])
    plot_surface(a2, ev.lead_aligned, px, title=f"lead {ev.lead_id}, aligned: where the cells matched",
                 scale_bar=False)
    draw_cells(a2, ev.cells_lead, px)
    a3 = fig.add_subplot(gs[0, 2])
    plot_overlay(a3, ev.query_surface, ev.lead_aligned, px, title="overlay (aligned)", scale_bar=False)
    x0, y1 = _fit_cells(px, ev.query_surface.shape, (a1, a2, a3), ev.cells_query + ev.cells_lead)
    for ax in (a1, a2, a3):  # under the surfaces and cells, where nothing else is drawn
        add_scale_bar(ax, px, width_px=ev.query_surface.shape[1], height_px=ev.query_surface.shape[0],
                      at=(x0 + 4, y1 - 2))
    b1 = fig.add_subplot(gs[1, 0])
    plot_correlation_surface(b1, ev.shift_um, ev.correlation)
    b2 = fig.add_subplot(gs[1, 1])
    plot_rotation_profile(b2, ev.rotation_deg, ev.rotation_ccf, reported_deg=ev.comparison.rotation_deg)
    b3 = fig.add_subplot(gs[1, 2])
    plot_cell_displacements(b3, ev.comparison.cmc_ab.cells, ccf_threshold=cmc.ccf_threshold,
                            xy_threshold_um=cmc.xy_threshold_um, search_um=cmc.search_um, legend=False)
    if not header:
        return fig
    fig.suptitle(title or _lead_title(ev, rank), fontsize=10.5, x=0.01, ha="left", y=0.985)
    fig.text(0.01, 0.955, cartridge_key(), fontsize=7.8, ha="left", va="top", color="#333333", linespacing=1.3)
    return fig


def query_figure(surface: np.ndarray, pixel_um: float, *, title: str, width_in: float = 3.6, dpi: float = 100.0):
    """A small picture of the query's prepared surface, with a scale bar."""
    fig = new_figure(width_in, width_in, dpi=dpi)
    ax = fig.add_axes([0.02, 0.02, 0.96, 0.88])
    plot_surface(ax, surface, pixel_um, title=title)
    return fig


# ---------------------------------------------------------------- bullets


def bullet_query_figure(prep, *, title: str, width_in: float = 3.6, dpi: float = 100.0):
    """The query bullet's land signatures, one above the other, with a scale bar in µm."""
    lands = list(prep.lands)
    fig = new_figure(width_in, max(2.4, 0.55 * len(lands) + 0.9), dpi=dpi)
    ax = fig.add_axes([0.14, 0.12, 0.83, 0.76])
    offset = 0.0
    span = 0.0
    for i, l in enumerate(lands):
        if l is None:
            ax.text(0, -offset, f"land {i + 1}: not scanned", fontsize=6.5, va="center")
        else:
            s = np.asarray(l.signature, np.float64)
            x = np.arange(len(s)) * prep.pixel_um
            span = max(span, float(x[-1]) if len(x) else 0.0)
            ax.plot(x, s - offset, color=BLUE, linewidth=0.7)
        offset += 4.0 * max((np.nanstd(l.signature) if l is not None else 1.0), 0.25)
    ax.set_yticks([])
    ax.set_xlabel("position along the land (µm)", fontsize=7)
    ax.tick_params(labelsize=6.5)
    ax.set_title(title, fontsize=9)
    if span > 0:
        L = nice_length_um(span)
        y = ax.get_ylim()[0]
        ax.plot([0, L], [y, y], color="black", linewidth=2.4, solid_capstyle="butt", gid="scale-bar")
        ax.text(L / 2, y, _fmt_um(L), ha="center", va="bottom", fontsize=6.5, gid="scale-bar-label")
    return fig


def plot_land_scores(ax, land_scores: np.ndarray, phase: int, *, title: str | None = None,
                     query_label: str = "query land", lead_label: str = "lead land", colorbar: bool = True):
    """Land-by-land score matrix (cividis, value in every tile), the matched phase outlined.

    ``land_scores[i, j]`` compares query land ``i`` with lead land ``j``;
    the tiles ``(i, (i + phase) % n_lead)`` of the matched phase get a thick
    solid blue outline (gid ``"phase-tile"``). Lands are numbered from 1.

    Returns
    -------
    list of Rectangle
        The outlined tiles.
    """
    from matplotlib.patches import Rectangle

    s = np.asarray(land_scores, np.float64)
    nq, nl = s.shape
    finite = s[np.isfinite(s)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmax <= vmin:
        vmax = vmin + 1e-6
    im = ax.imshow(np.ma.masked_invalid(s), cmap="cividis", vmin=vmin, vmax=vmax, origin="upper", interpolation="nearest")
    from matplotlib import colormaps

    cm = colormaps["cividis"]
    for i in range(nq):
        for j in range(nl):
            v = s[i, j]
            if np.isfinite(v):
                lum = np.dot(cm((v - vmin) / (vmax - vmin))[:3], [0.299, 0.587, 0.114])
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="black" if lum > 0.5 else "white")
            else:
                ax.text(j, i, "–", ha="center", va="center", fontsize=7, color="black")
    tiles = []
    for i in range(nq):
        j = (i + phase) % nl
        r = Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor=BLUE, linewidth=2.6, gid="phase-tile", zorder=4)
        r.set_path_effects(_halo(4.4))
        ax.add_patch(r)
        tiles.append(r)
    ax.set_xticks(range(nl), [str(j + 1) for j in range(nl)], fontsize=7)
    ax.set_yticks(range(nq), [str(i + 1) for i in range(nq)], fontsize=7)
    ax.set_xlabel(lead_label, fontsize=8)
    ax.set_ylabel(query_label, fontsize=8)
    ax.set_title(title or f"land-by-land scores, matched phase {phase} outlined", fontsize=10)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        cb.ax.tick_params(labelsize=7)
    return tiles


def _halo(width: float):
    from matplotlib import patheffects

    return [patheffects.Stroke(linewidth=width, foreground="white"), patheffects.Normal()]


def plot_signature_pair(ax, query_um: np.ndarray, lead_um: np.ndarray, pixel_um: float, *, lag_um: float = 0.0,
                        title: str | None = None, show_scale: bool = True):
    """Two land signatures aligned: the query solid blue, the lead dashed orange, moved by ``lag_um``.

    x is the position along the land in µm (the query's first sample at 0);
    y the signature height in µm. A horizontal bar marks 100 µm (or a
    round length near a fifth of the span) along the land.

    Returns
    -------
    (Line2D, Line2D)
    """
    q = np.asarray(query_um, np.float64)
    l = np.asarray(lead_um, np.float64)
    xq = np.arange(len(q)) * pixel_um
    xl = np.arange(len(l)) * pixel_um + lag_um
    (a,) = ax.plot(xq, q, color=BLUE, linewidth=1.0, linestyle="-", label="query", gid="signature-query")
    (b,) = ax.plot(xl, l, color=ORANGE, linewidth=1.0, linestyle=(0, (4, 1.5)), label="lead", gid="signature-lead")
    ax.set_ylabel("height (µm)", fontsize=7)
    ax.tick_params(labelsize=6.5)
    ax.grid(True, color="#eeeeee", linewidth=0.5)
    if title:
        ax.set_title(title, fontsize=8, loc="left")
    if show_scale:
        lo, hi = min(xq[0], xl[0]), max(xq[-1] if len(xq) else 0, xl[-1] if len(xl) else 0)
        L = nice_length_um(max(hi - lo, pixel_um))
        y = ax.get_ylim()
        yb = y[0] + 0.08 * (y[1] - y[0])
        ax.plot([lo, lo + L], [yb, yb], color="black", linewidth=2.4, solid_capstyle="butt", gid="scale-bar")
        ax.text(lo + L / 2, yb, _fmt_um(L), ha="center", va="bottom", fontsize=6.5, gid="scale-bar-label")
    return a, b


def bullet_lead_figure(ev: BulletEvidence, *, rank: int | None = None, width_in: float = 12.0, dpi: float = 100.0):
    """All pictures of one bullet lead: the land score matrix and the matched lands' signatures.

    Left: :func:`plot_land_scores` with the matched phase outlined and the
    phase means below. Right: one row per matched land pair, signatures
    aligned by their lag (:func:`plot_signature_pair`).

    Returns
    -------
    Figure
    """
    pairs = ev.matched_pairs
    n = len(pairs)
    fig = new_figure(width_in, max(4.5, 1.05 * n + 1.4), dpi=dpi)
    gs = fig.add_gridspec(n, 2, width_ratios=[1.0, 1.55], left=0.06, right=0.985, top=0.88, bottom=0.09,
                          wspace=0.22, hspace=0.55)
    ax = fig.add_subplot(gs[: max(1, n - 1) if n > 2 else n, 0])
    plot_land_scores(ax, ev.land_scores, ev.phase)
    means = ev.phase_means
    fig.text(0.06, 0.03, "phase means: " + ", ".join(f"{k}: {m:.2f}" for k, m in enumerate(means)),
             fontsize=7.5, ha="left")
    for row, (i, j) in enumerate(pairs):
        a = fig.add_subplot(gs[row, 1])
        plot_signature_pair(a, ev.signatures_query_um[i], ev.signatures_lead_um[j], ev.pixel_um, lag_um=ev.lags_um[i],
                            title=f"query land {i + 1} — lead land {j + 1}: score {ev.land_scores[i, j]:.2f}",
                            show_scale=row == n - 1)
        if row == n - 1:
            a.set_xlabel("position along the land (µm)", fontsize=7)
        if row == 0:
            a.legend(fontsize=6.5, loc="upper right", framealpha=0.85)
    head = f"Lead {rank}: " if rank is not None else ""
    score = f", bullet score {ev.score:.2f}" if ev.score is not None else ""
    fig.suptitle(f"{head}{ev.lead_id} against {ev.query_id} — matched phase {ev.phase}{score}",
                 fontsize=10.5, x=0.01, ha="left")
    return fig


# ---------------------------------------------------------------- benchmarks


def _scores(x, name: str) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError(f"{name} has no finite scores")
    return v


def roc_curve(same_scores, diff_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """ROC of pairwise scores: higher score = more likely same firearm.

    Parameters
    ----------
    same_scores, diff_scores : array_like
        Scores of same-firearm and different-firearm pairs (non-finite
        values are dropped).

    Returns
    -------
    fpr, tpr : ndarray
        False and true positive rates at every distinct threshold, from
        (0, 0) to (1, 1).
    thresholds : ndarray
        Score thresholds (a pair is called "same" when score >= threshold);
        the first is +inf.
    auc : float
        Area under the curve (ties count half), equal to the Mann-Whitney
        probability that a same-firearm pair outscores a different-firearm pair.
    """
    s, d = _scores(same_scores, "same_scores"), _scores(diff_scores, "diff_scores")
    thr = np.concatenate([[np.inf], np.unique(np.concatenate([s, d]))[::-1]])
    ss, ds = np.sort(s), np.sort(d)
    tpr = (len(ss) - np.searchsorted(ss, thr, side="left")) / len(ss)
    fpr = (len(ds) - np.searchsorted(ds, thr, side="left")) / len(ds)
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    return fpr, tpr, thr, auc


def _save(fig, path) -> None:
    if path is None:
        return
    from pathlib import Path

    p = Path(path)
    if p.suffix.lower() == ".png":
        p.write_bytes(figure_png(fig, palette=False))
    else:
        fig.savefig(p, metadata={"Creator": None} if p.suffix.lower() == ".pdf" else None)


def roc_figure(same_scores, diff_scores, path=None, *, title: str | None = None, label: str = "ibin"):
    """ROC curve of same-firearm against different-firearm pair scores.

    Parameters
    ----------
    same_scores, diff_scores : array_like
    path : str or Path, optional
        Write the figure there (PNG, PDF or SVG by the suffix).
    title : str, optional
    label : str
        Legend label of the curve (the AUC is appended).

    Returns
    -------
    Figure
        Its axes hold the curve as a line with gid ``"roc"``.
    """
    fpr, tpr, _, auc = roc_curve(same_scores, diff_scores)
    fig = new_figure(4.8, 4.6)
    ax = fig.add_axes([0.14, 0.12, 0.8, 0.78])
    ax.plot([0, 1], [0, 1], color=GREY, linestyle=":", linewidth=1.0, label="chance")
    # straight segments between thresholds: tied scores give the diagonal the trapezoidal AUC counts
    ax.plot(fpr, tpr, color=BLUE, linewidth=1.8, label=f"{label} (AUC {auc:.3f})", gid="roc")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (different firearm called same)", fontsize=8)
    ax.set_ylabel("true positive rate (same firearm found)", fontsize=8)
    ax.tick_params(labelsize=7.5)
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    ax.legend(loc="lower right", fontsize=8)
    n_s, n_d = len(_scores(same_scores, "same_scores")), len(_scores(diff_scores, "diff_scores"))
    ax.set_title(title or f"ROC: {n_s} same-firearm, {n_d} different-firearm pairs", fontsize=9.5)
    _save(fig, path)
    return fig


def score_histogram_figure(same_scores, diff_scores, path=None, *, threshold: float | None = None,
                           bins: int | Sequence[float] = 40, title: str | None = None, xlabel: str = "score",
                           log_counts: bool = False):
    """Histograms of same-firearm and different-firearm pair scores on shared bins.

    Same-firearm pairs: blue, solid outline, light fill; different-firearm
    pairs: orange, dashed outline, hatched, so the two read apart in grey.

    Parameters
    ----------
    same_scores, diff_scores : array_like
    path : str or Path, optional
    threshold : float, optional
        Drawn as a vertical line (e.g. 6 for the CMC count criterion).
    bins : int or sequence of float
    title, xlabel : str, optional
    log_counts : bool
        Logarithmic count axis (different-firearm pairs usually outnumber
        the others by far).

    Returns
    -------
    Figure
        Its axes hold two histograms; the bar patches carry gids
        ``"hist-same"`` and ``"hist-diff"``.
    """
    s, d = _scores(same_scores, "same_scores"), _scores(diff_scores, "diff_scores")
    edges = np.histogram_bin_edges(np.concatenate([s, d]), bins=bins)
    fig = new_figure(6.4, 3.8)
    ax = fig.add_axes([0.1, 0.14, 0.86, 0.74])
    _, _, pd = ax.hist(d, bins=edges, histtype="stepfilled", facecolor=(0.902, 0.624, 0.0, 0.25), edgecolor=ORANGE,
                       linestyle="--", linewidth=1.4, hatch="///", label=f"different firearm ({len(d)})")
    _, _, ps = ax.hist(s, bins=edges, histtype="stepfilled", facecolor=(0.0, 0.447, 0.698, 0.25), edgecolor=BLUE,
                       linestyle="-", linewidth=1.6, label=f"same firearm ({len(s)})")
    for p in pd:
        p.set_gid("hist-diff")
    for p in ps:
        p.set_gid("hist-same")
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle=":", linewidth=1.2, label=f"threshold {threshold:g}")
    if log_counts:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel, fontsize=8.5)
    ax.set_ylabel("pairs", fontsize=8.5)
    ax.tick_params(labelsize=7.5)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title or "pair scores by ground truth", fontsize=9.5)
    _save(fig, path)
    return fig
