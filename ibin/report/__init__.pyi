from ._evidence import BulletEvidence, CartridgeEvidence, CellOutline, bullet_evidence, cartridge_evidence, warp_into
from ._figures import (
    add_scale_bar,
    bullet_lead_figure,
    bullet_query_figure,
    cartridge_lead_figure,
    draw_cells,
    figure_png,
    plot_cell_displacements,
    plot_correlation_surface,
    plot_land_scores,
    plot_overlay,
    plot_rotation_profile,
    plot_signature_pair,
    plot_surface,
    query_figure,
    roc_curve,
    roc_figure,
    score_histogram_figure,
)
from ._report import LeadPicture, Report, build_report, lead_picture, render_html, write_pdf, write_report
from ._server import ReviewServer
