"""Lead-list reports: the query, its lead list and the pictures of the top leads.

:func:`build_report` runs the search (through :mod:`ibin.engine`, so the
lead list is exactly what ``ibin search`` gives), then, for each of the top
leads with pictures, repeats that one comparison to get its cell-level
detail (the comparison is deterministic: the score must come out the same,
and a mismatch is reported in the lead's note) and draws it.

:func:`render_html` writes one self-contained HTML page: styles inline,
images embedded as ``data:`` PNGs, no script and no external address, so it
opens offline in any browser and can be mailed or archived as one file.
:func:`write_pdf` writes the same content as a PDF (matplotlib's PdfPages).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..leads import Lead, LeadList

__all__ = ["LeadPicture", "Report", "build_report", "render_html", "write_report", "write_pdf", "lead_picture"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeadPicture:
    """The picture of one lead.

    Attributes
    ----------
    lead : Lead
    png : bytes or None
        The composite figure (None when it could not be made; see ``note``).
    evidence : CartridgeEvidence or None
    note : str
        Empty, or why there is no picture / what to be aware of.
    """

    lead: Lead
    png: bytes | None
    evidence: object | None
    note: str = ""


@dataclass(frozen=True)
class Report:
    """A query's lead list with the pictures of its top leads.

    Attributes
    ----------
    leads : LeadList
    pictures : tuple of LeadPicture
        For the first ``pictures`` leads of the list (in rank order).
    query_png : bytes
        The query's prepared surface with a scale bar.
    query_metadata : dict
        The query exhibit's metadata when it is on file.
    query_notes : tuple of str
        How the query was prepared.
    query_area_mm2 : float
        Measured breech-face area after preparation.
    created_at : str
        ISO 8601, UTC.
    timing_ms : dict
        ``search``, ``pictures``, ``total``.
    """

    leads: LeadList
    pictures: tuple[LeadPicture, ...]
    query_png: bytes
    query_metadata: dict = field(default_factory=dict)
    query_notes: tuple[str, ...] = ()
    query_area_mm2: float = float("nan")
    created_at: str = ""
    timing_ms: dict = field(default_factory=dict)


def lead_picture(db, query_prep, lead: Lead, *, query_id: str, kind: str = "cartridge", comparison=None,
                 header: bool = False, dpi: float = 100.0) -> LeadPicture:
    """Draw the evidence of one lead.

    Parameters
    ----------
    db : Database
    query_prep : PreparedCartridge
        The prepared query (``search(..., details=...)`` or
        :func:`ibin.engine.load_prepared`).
    lead : Lead
        A lead of the query's lead list.
    query_id : str
    kind : str
        Exhibit kind: selects how the evidence is computed and drawn
        (``_PICTURES``; a kind without pictures yet gets a note).
    comparison : AreaComparison, optional
        The comparison behind the lead (``search(..., details=...)``);
        without it the query and the lead are compared again, and a score
        that differs from the lead's is reported in the note.
    header : bool
        Draw the title and colour key into the picture (the HTML report and
        the review page show them as text instead).
    dpi : float

    Returns
    -------
    LeadPicture
    """
    from ..errors import IbinError

    if lead.status != "ok":
        return LeadPicture(lead, None, None, f"no picture: the comparison {lead.status}")
    draw = _PICTURES.get(kind)
    if draw is None:
        return LeadPicture(lead, None, None, f"no pictures for {kind} leads yet")
    try:
        return draw(db, query_prep, lead, query_id=query_id, comparison=comparison, header=header, dpi=dpi)
    except (IbinError, ValueError) as e:
        return LeadPicture(lead, None, None, f"no picture: {e}")


def _cartridge_picture(db, query_prep, lead: Lead, *, query_id: str, comparison, header: bool,
                       dpi: float) -> LeadPicture:
    from ..correlate import compare_prepared
    from ..engine import load_prepared
    from ._evidence import cartridge_evidence
    from ._figures import cartridge_lead_figure, figure_png

    lead_prep = load_prepared(db, lead.id)
    r = compare_prepared(query_prep, lead_prep) if comparison is None else comparison
    ev = cartridge_evidence(query_prep, lead_prep, r, query_id=query_id, lead_id=lead.id)
    png = figure_png(cartridge_lead_figure(ev, rank=lead.rank, header=header, dpi=dpi))
    note = ""
    if not math.isclose(r.score, lead.score, rel_tol=0, abs_tol=1e-4):
        note = (f"the comparison repeated for this picture scored {r.score:.4f}, the lead list {lead.score:.4f}: "
                "the database changed or the exhibits were prepared differently")
        log.warning("%s vs %s: %s", query_id, lead.id, note)
    return LeadPicture(lead, png, ev, note)


def _bullet_picture(db, query_prep, lead: Lead, *, query_id: str, comparison, header: bool,
                    dpi: float) -> LeadPicture:
    from ..correlate import ProfileParams, ProfileSet, compare_bullets
    from ..engine import load_prepared
    from ._evidence import bullet_evidence
    from ._figures import bullet_lead_figure, figure_png

    lead_prep = load_prepared(db, lead.id)
    if comparison is None:
        sets = [ProfileSet([None if l is None else l.signature for l in p.lands], p.pixel_um,
                           coarse_factor=ProfileParams().coarse_factor) for p in (query_prep, lead_prep)]
        comparison = compare_bullets(*sets)
    ev = bullet_evidence(query_prep, lead_prep, comparison, query_id=query_id, lead_id=lead.id)
    png = figure_png(bullet_lead_figure(ev, rank=lead.rank, dpi=dpi))
    note = ""
    if not math.isclose(comparison.score, lead.score, rel_tol=0, abs_tol=1e-4):
        note = (f"the comparison repeated for this picture scored {comparison.score:.4f}, the lead list "
                f"{lead.score:.4f}: the database changed or the exhibits were prepared differently")
    return LeadPicture(lead, png, ev, note)


#: How the pictures of a lead are made, by exhibit kind.
_PICTURES = {"cartridge": _cartridge_picture, "bullet": _bullet_picture}


def build_report(
    db,
    *,
    exhibit_id: str | None = None,
    scan=None,
    kind: str = "cartridge",
    params=None,
    pictures: int = 3,
    pixel_um: float | None = None,
    dpi: float = 100.0,
) -> Report:
    """Search and draw: the lead list of a query with pictures of its top leads.

    Give exactly one of ``exhibit_id`` (an exhibit on file, searched against
    all the others, as ``ibin search --id``) and ``scan`` (a scan file or
    :class:`~ibin.Scan`, not added, as ``ibin search FILE``).

    Parameters
    ----------
    db : Database
    exhibit_id : str, optional
    scan : path or Scan, optional
    kind : str
    params : SearchParams, optional
        Lead-list length, candidates, metadata filters.
    pictures : int
        Leads drawn, from the top of the list (0 for none).
    pixel_um : float, optional
        Pixel size of an image or ``.npy`` query.
    dpi : float
        Resolution of the figures (100: a lead figure is 1200 x 830 pixels).

    Returns
    -------
    Report
    """
    from ..engine import SearchParams, search, search_exhibits
    from ..scan import Scan, load_scan
    from ._figures import figure_png, query_figure

    if (exhibit_id is None) == (scan is None):
        raise ValueError("give exactly one of exhibit_id and scan")
    if pictures < 0:
        raise ValueError("pictures must be zero or more")
    p = params or SearchParams()
    t0 = time.perf_counter()
    details: dict = {}
    if exhibit_id is not None:
        ll = next(iter(search_exhibits(db, [exhibit_id], kind=kind, params=p, details=details)))
        qmd = dict(db.get(exhibit_id).metadata)
    elif kind == "bullet":  # a bullet's land files (or one land, a fragment)
        ll = search(db, scan, kind=kind, params=p, details=details, pixel_um=pixel_um)
        qmd = {}
    else:
        s = scan if isinstance(scan, Scan) else load_scan(scan, pixel_um=pixel_um)
        ll = search(db, s, kind=kind, params=p, details=details)
        on_file = db.find_source(s.sha256, kind) if s.sha256 else None
        qmd = dict(db.get(on_file).metadata) if on_file else {}
    qprep, comparisons = details[ll.query_id]["query"], details[ll.query_id]["comparisons"]
    t1 = time.perf_counter()
    pics = tuple(lead_picture(db, qprep, lead, query_id=ll.query_id, kind=ll.kind, comparison=comparisons.get(lead.id),
                              dpi=dpi) for lead in ll.leads[:pictures])
    if ll.kind == "bullet":
        from ._figures import bullet_query_figure

        qpng = figure_png(bullet_query_figure(qprep, title=f"query {ll.query_id}", dpi=dpi))
    else:
        qpng = figure_png(query_figure(qprep.surface, qprep.pixel_um, title=f"query {ll.query_id}", dpi=dpi))
    t2 = time.perf_counter()
    return Report(
        leads=ll, pictures=pics, query_png=qpng, query_metadata=qmd, query_notes=tuple(getattr(qprep, "notes", ())),
        query_area_mm2=getattr(qprep, "valid_area_mm2", float("nan")),
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        timing_ms={"search": (t1 - t0) * 1e3, "pictures": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3},
    )


# ---------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;margin:0;background:#fafafa}
main{max-width:1240px;margin:0 auto;padding:18px 22px 40px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px}
.sub{color:#555;margin:0 0 16px}
.query{display:flex;gap:22px;align-items:flex-start;background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px}
.query img{width:300px;height:auto;border:1px solid #eee}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:0}dt{color:#555}dd{margin:0}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border-bottom:1px solid #e3e3e3;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#f0f0f0;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.lead{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 12px;margin-top:18px;page-break-inside:avoid}
.lead h2{margin:2px 0 4px}
.lead img{width:100%;height:auto;display:block}
.note{color:#7a4a00;background:#fff6e0;padding:4px 8px;border-radius:4px}
.disp{display:inline-block;padding:0 6px;border-radius:3px;border:1px solid #999;font-size:12px}
.disp.hit{background:#0072B2;color:#fff;border-color:#0072B2;font-weight:600}
.disp.no-hit{background:#fff;border-style:dashed}
.legend{font-size:12.5px;color:#333}
footer{margin-top:30px;color:#666;font-size:12px}
@media print{body{background:#fff}.lead{page-break-before:always}}
"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _num(v, fmt: str) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _disposition_html(lead: Lead) -> str:
    d = lead.extra.get("disposition") or {}
    status = d.get("status", "not reviewed")
    cls = {"hit": "hit", "no hit": "no-hit"}.get(status, "")
    out = f'<span class="disp {cls}">{_e(status)}</span>'
    if d.get("by") or d.get("at"):
        out += f" <small>{_e(d.get('by') or '')} {_e((d.get('at') or '')[:16].replace('T', ' '))}</small>"
    if d.get("comment"):
        out += f"<br><small>{_e(d['comment'])}</small>"
    return out


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (no script, no external address)."""
    from .. import __version__
    from ..correlate import CMCParams

    ll = report.leads
    cmc = CMCParams()
    pics = {p.lead.rank: p for p in report.pictures}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>ibin lead list: {_e(ll.query_id)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>Lead list for {_e(ll.query_id)}</h1>",
        f'<p class="sub">{_e(ll.kind)} · {len(ll.leads)} leads from {ll.database_exhibits} exhibits on file '
        f"in {_e(ll.database_path)} · {_e(report.created_at.replace('T', ' '))} UTC</p>",
        '<section class="query">',
        f'<img alt="prepared surface of the query {_e(ll.query_id)}" src="{_png_uri(report.query_png)}">',
        "<dl>",
        f"<dt>query</dt><dd>{_e(ll.query_id)}</dd>",
        f"<dt>file</dt><dd>{_e(ll.query_file or '–')}</dd>",
        f"<dt>kind</dt><dd>{_e(ll.kind)}</dd>",
    ]
    bullet = ll.kind == "bullet"
    if not bullet:
        parts.append(f"<dt>breech face</dt><dd>{_num(report.query_area_mm2, '.1f')} mm² measured after preparation</dd>")
    for k, v in report.query_metadata.items():
        parts.append(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>")
    for n in report.query_notes:
        parts.append(f"<dt>prepared</dt><dd>{_e(n)}</dd>")
    t = ll.timing_ms
    parts.append(f"<dt>search</dt><dd>{_num(t.get('total'), '.0f')} ms (re-rank {_num(t.get('rerank'), '.0f')} ms)</dd>")
    parts += ["</dl></section>", "<h2>Leads</h2>", "<table><thead><tr>"]
    if bullet:
        cols = ["rank", "exhibit", "score", "phase", "phase margin", "best land CCF", "lands compared", "metadata",
                "disposition"]
    else:
        cols = ["rank", "exhibit", "score", "CMC", "cells", "CCF", "rotation °", "dx µm", "dy µm", "metadata",
                "disposition"]
    parts.append("".join(f"<th>{c}</th>" for c in cols) + "</tr></thead><tbody>")
    for l in ll.leads:
        name = f'<a href="#lead-{l.rank}">{_e(l.id)}</a>' if l.rank in pics and pics[l.rank].png else _e(l.id)
        md = ", ".join(f"{k}={v}" for k, v in l.metadata.items())
        if l.status != "ok":
            md = l.status + ("; " + md if md else "")
        if bullet:
            x = l.extra
            parts.append(
                "<tr>" + f'<td class="num">{l.rank}</td><td>{name}</td>'
                + f'<td class="num">{_num(l.score, ".3f")}</td><td class="num">{_num(x.get("phase"), "d")}</td>'
                + f'<td class="num">{_num(x.get("phase_margin"), ".3f")}</td><td class="num">{_num(l.ccf, ".3f")}</td>'
                + f'<td class="num">{len(x.get("lands", []))}</td><td>{_e(md)}</td><td>{_disposition_html(l)}</td></tr>'
            )
            continue
        parts.append(
            "<tr>" + f'<td class="num">{l.rank}</td><td>{name}</td>'
            + f'<td class="num">{_num(l.score, ".2f")}</td><td class="num">{_num(l.cmc, "d")}</td>'
            + f'<td class="num">{_num(l.cells, "d")}</td><td class="num">{_num(l.ccf, ".3f")}</td>'
            + f'<td class="num">{_num(l.rotation_deg, ".1f")}</td><td class="num">{_num(l.dx_um, ".0f")}</td>'
            + f'<td class="num">{_num(l.dy_um, ".0f")}</td><td>{_e(md)}</td><td>{_disposition_html(l)}</td></tr>'
        )
    if not ll.leads:
        parts.append(f'<tr><td colspan="{len(cols)}">no exhibits to compare with</td></tr>')
    parts.append("</tbody></table>")
    if bullet:
        parts.append(
            '<p class="legend">Score = sequence average maximum (Hare, Hofmann & Carriquiry 2017): the mean, over the '
            "land pairs of the best phase, of the land-to-land cross-correlation maximum (a missing comparison counts "
            "zero). Phase k pairs query land i with lead land i + k; the phase margin is how far the best phase "
            "stands above the next.</p>"
        )
    else:
        parts.append(
        '<p class="legend">Score = CMC count + areal CCF. CMC: congruent matching cells, the smaller count of the two '
        f"directions (Song 2013; Tong et al. 2015): {cmc.cell_um:g} µm cells with CCF ≥ {cmc.ccf_threshold:g}, "
        f"within ±{cmc.xy_threshold_um:g} µm and ±{cmc.theta_threshold_deg:g}° of the consensus; six or more is the "
        "NIST identification criterion, set on scans from one instrument: between scans of different resolutions a "
        "few different-firearm pairs reach six (ibin's fadul_variants benchmark), so here it marks a strong lead for "
        "the examiner's comparison, not a conclusion. The alignment (rotation, dx, dy) brings the lead onto the "
        "query.</p>"
        )
    for p in report.pictures:
        l = p.lead
        parts.append(f'<section class="lead" id="lead-{l.rank}"><h2>Lead {l.rank}: {_e(l.id)}</h2>')
        detail = ""
        r = getattr(p.evidence, "comparison", None)
        if r is not None:
            detail = (f" (query cells {r.cmc_ab.cmc}/{r.cmc_ab.cell_count}, lead cells {r.cmc_ba.cmc}/"
                      f"{r.cmc_ba.cell_count})")
        if bullet:
            parts.append(f"<p>score {_num(l.score, '.3f')} · phase {_num(l.extra.get('phase'), 'd')} · best land CCF "
                         f"{_num(l.ccf, '.3f')} · disposition {_disposition_html(l)}</p>")
        else:
            parts.append(f"<p>score {_num(l.score, '.2f')} · CMC {_num(l.cmc, 'd')} of {_num(l.cells, 'd')}{detail} · "
                         f"CCF {_num(l.ccf, '.3f')} · lead rotated {_num(l.rotation_deg, '.1f')}°, shifted "
                         f"({_num(l.dx_um, '.0f')}, {_num(l.dy_um, '.0f')}) µm · disposition {_disposition_html(l)}</p>")
        if p.note:
            parts.append(f'<p class="note">{_e(p.note)}</p>')
        if p.png and bullet:
            alt = f"lead {l.rank}, {l.id}: land-by-land scores with the matched phase, aligned land signatures"
            parts.append(f'<img alt="{_e(alt)}" src="{_png_uri(p.png)}">')
            parts.append(
                '<p class="legend">Left: the land-by-land cross-correlation maxima (query lands in rows, lead lands '
                "in columns), the tiles of the matched phase outlined in blue. Right: each matched pair of land "
                "signatures aligned by its lag (query solid blue, lead dashed orange), heights in µm against the "
                "position along the land.</p>"
            )
        elif p.png:
            alt = (f"lead {l.rank}, {l.id}: query and aligned lead with congruent matching cells, overlay, "
                   "correlation around the peak, correlation against rotation, cell positions")
            parts.append(f'<img alt="{_e(alt)}" src="{_png_uri(p.png)}">')
            parts.append(
                '<p class="legend">Top: the query with its cells; the lead moved onto the query by the reported '
                "alignment, each cell drawn where it matched best (solid blue outline: congruent; dashed orange: "
                "not; the number is the cell's CCF); the overlay (blue where the query is higher, orange where the "
                "lead is, grey where they agree). Bottom: the areal correlation for small shifts of the lead around "
                "the reported alignment (ring; + the maximum), the best correlation at every rotation, and where each "
                "cell matched relative to its registered position (dashed square: the congruence tolerance).</p>"
            )
        parts.append("</section>")
    parts.append(
        f"<footer>ibin {_e(__version__)} · lead-list schema 1 · search {_num(report.timing_ms.get('search'), '.0f')} ms, "
        f"pictures {_num(report.timing_ms.get('pictures'), '.0f')} ms · this file is self-contained "
        "(no script, no external resources).</footer>"
    )
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def write_pdf(report: Report, path: str | os.PathLike) -> Path:
    """Write the report as a PDF: a page with the query and the lead list, then one page per lead picture."""
    from matplotlib.backends.backend_pdf import PdfPages

    from ._evidence import BulletEvidence, CartridgeEvidence
    from ._figures import bullet_lead_figure, cartridge_lead_figure, new_figure, plot_surface

    ll = report.leads
    out = Path(path)
    with PdfPages(out, metadata={"Title": f"ibin lead list: {ll.query_id}", "Creator": "ibin", "Producer": None}) as pdf:
        fig = new_figure(11.69, 8.27)
        fig.text(0.04, 0.95, f"Lead list for {ll.query_id}", fontsize=16, weight="bold", va="top")
        fig.text(0.04, 0.905, f"{ll.kind}; {len(ll.leads)} leads from {ll.database_exhibits} exhibits on file in "
                 f"{ll.database_path}; {report.created_at.replace('T', ' ')} UTC; file {ll.query_file or '-'}",
                 fontsize=8.5, va="top")
        pics = [p for p in report.pictures if p.evidence is not None]
        first = next((p.evidence for p in pics if isinstance(p.evidence, CartridgeEvidence)), None)
        if first is not None:
            ax = fig.add_axes([0.04, 0.42, 0.28, 0.42])
            plot_surface(ax, first.query_surface, first.pixel_um, title=f"query {ll.query_id}")
        tab = fig.add_axes([0.36, 0.06, 0.6, 0.8])
        tab.axis("off")
        rows = [[str(l.rank), l.id, _num(l.score, ".2f"), _num(l.cmc, "d"), _num(l.ccf, ".3f"),
                 _num(l.rotation_deg, ".1f"), (l.extra.get("disposition") or {}).get("status", "not reviewed")]
                for l in ll.leads[:30]]
        if rows:
            t = tab.table(cellText=rows, colLabels=["rank", "exhibit", "score", "CMC", "CCF", "rot °", "disposition"],
                          loc="upper left", cellLoc="left")
            t.auto_set_font_size(False)
            t.set_fontsize(8)
            t.scale(1.0, 1.25)
        pdf.savefig(fig)
        for p in pics:
            if isinstance(p.evidence, BulletEvidence):
                pdf.savefig(bullet_lead_figure(p.evidence, rank=p.lead.rank))
            else:
                pdf.savefig(cartridge_lead_figure(p.evidence, rank=p.lead.rank))
    return out


def write_report(report: Report, html_path: str | os.PathLike, *, pdf_path: str | os.PathLike | None = None) -> dict:
    """Write the HTML report (and the PDF when ``pdf_path`` is given).

    Returns
    -------
    dict
        ``{"html": path, "html_bytes": n, "pdf": path or None, "pdf_bytes": n or None}``.
    """
    hp = Path(html_path)
    tmp = hp.with_name(hp.name + ".tmp")
    tmp.write_text(render_html(report), encoding="utf-8")
    os.replace(tmp, hp)
    out = {"html": str(hp), "html_bytes": hp.stat().st_size, "pdf": None, "pdf_bytes": None}
    if pdf_path is not None:
        pp = write_pdf(report, pdf_path)
        out.update(pdf=str(pp), pdf_bytes=pp.stat().st_size)
    return out
