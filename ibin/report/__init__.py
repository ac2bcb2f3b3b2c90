"""Examiner's view: lead-list reports with pictures, the review page, benchmark plots.

* :func:`build_report` / :func:`write_report` — a self-contained HTML report
  (and optionally a PDF) of a query's lead list with the pictures of its top
  leads (``ibin report``);
* :func:`cartridge_evidence` and the figure functions of :mod:`._figures` —
  the pictures themselves, usable on their own;
* :class:`ReviewServer` — the local review page (``ibin serve``);
* :func:`roc_figure`, :func:`score_histogram_figure` — benchmark plots.

Importing :mod:`ibin.report` loads neither matplotlib nor the server;
they load on first use.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
