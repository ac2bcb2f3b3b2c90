"""The review page: a local web server where an examiner goes through lead lists and records dispositions.

Standard library only (:mod:`http.server`), one page of static HTML, CSS and
JavaScript (``static/``) and a small JSON API:

=======  ===========================  =============================================
method   path                         answer
=======  ===========================  =============================================
GET      ``/``                        the page
GET      ``/api/info``                database, exhibit count, default examiner
GET      ``/api/exhibits``            exhibits on file with their review counts
GET      ``/api/leads?id=ID&top=N``   lead list of an exhibit (JSON of ``ibin search``)
GET      ``/api/figure?query=&lead=`` PNG: the lead's pictures (as in the report)
GET      ``/api/history?query=&lead=`` every disposition recorded for the pair
GET      ``/api/hits``                confirmed hits and linked groups
GET      ``/api/report?id=ID``        the HTML report of the exhibit's lead list
POST     ``/api/disposition``         ``{"query", "lead", "status", "comment", "by"}``
=======  ===========================  =============================================

It listens on the loopback interface by default and has no accounts: anyone
who can reach the port can record dispositions, so bind it elsewhere only
on a trusted network. Requests whose ``Host`` is not the server's own name
are refused (DNS rebinding), and writes must be JSON from the page's own
origin (no cross-site form posts).

Lead lists and pictures are computed on first request and kept in memory
(keyed by the number of exhibits on file, so new exhibits bring fresh
lists); dispositions are always read from the catalog.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
import urllib.parse
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

__all__ = ["ReviewServer"]

log = logging.getLogger(__name__)

_STATIC = {
    "/": ("review.html", "text/html; charset=utf-8"),
    "/index.html": ("review.html", "text/html; charset=utf-8"),
    "/review.js": ("review.js", "text/javascript; charset=utf-8"),
    "/review.css": ("review.css", "text/css; charset=utf-8"),
}
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
_MAX_BODY = 64 * 1024


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return self.put(key, make())

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class _ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ReviewServer:
    """The review page of one database.

    Parameters
    ----------
    db_path : path
        Database directory (opened for writing: dispositions are stored).
    host : str
        Address to listen on (default loopback).
    port : int
        Port; 0 picks a free one (see :attr:`url`).
    user : str, optional
        Default examiner name offered by the page (default: ``$IBIN_USER`` or
        the login name); the page sends the name the examiner types.
    top : int
        Default lead-list length.
    candidates : int
        Exhibits the index hands to the full correlation.

    Examples
    --------
    >>> with ReviewServer("lab-db", port=0) as srv:      # doctest: +SKIP
    ...     srv.start()                                  # serve in a background thread
    ...     print(srv.url)
    """

    def __init__(self, db_path, *, host: str = "127.0.0.1", port: int = 0, user: str | None = None,
                 top: int = 10, candidates: int = 100):
        from ..engine import _user, open_database

        self.db = open_database(db_path)
        self.user = _user(user)
        self.top = int(top)
        self.candidates = int(candidates)
        self._lock = threading.RLock()
        self._lists = _LRU(64)
        self._figures = _LRU(128)
        self._prepared = _LRU(16)
        handler = type("Handler", (_Handler,), {"app": self})
        server_class = _Server6 if ":" in host else ThreadingHTTPServer
        try:
            self.httpd = server_class((host, port), handler)
        except OSError as e:
            self.db.close()
            raise OSError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self.loopback = _is_loopback(host)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        h = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{h}:{self.port}/"

    # ------------------------------------------------------------------ running
    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (or KeyboardInterrupt)."""
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> "ReviewServer":
        """Serve in a background (daemon) thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="ibin-review", daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop serving and close the database."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.httpd.server_close()
        with self._lock:
            self.db.close()

    def __enter__(self) -> "ReviewServer":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ API
    def info(self) -> dict:
        from .. import __version__

        with self._lock:
            return {"database": str(self.db.path), "exhibits": self.db.count(), "user": self.user,
                    "top": self.top, "version": __version__, "statuses": list(_statuses())}

    def exhibits(self) -> list[dict]:
        with self._lock:
            recs = self.db.list()
            counts = self.db.reviews.counts_by_exhibit()
        return [{"id": r.id, "kind": r.kind, "source": r.source_name, "ingested_at": r.ingested_at,
                 "metadata": r.metadata, **counts.get(r.id, {"hit": 0, "no hit": 0})} for r in recs]

    def _lead_list(self, exhibit_id: str, top: int):
        from ..engine import SearchParams, search_exhibits
        from ..errors import ExhibitNotFoundError

        with self._lock:
            try:
                rec = self.db.get(exhibit_id)
            except ExhibitNotFoundError as e:
                raise _ApiError(404, str(e)) from None
            key = (exhibit_id, top, self.db.count(kind=rec.kind))
            params = SearchParams(top=top, candidates=max(self.candidates, top))

            def make():
                details: dict = {}
                ll = next(iter(search_exhibits(self.db, [exhibit_id], kind=rec.kind, params=params, details=details)))
                self._prepared.put(exhibit_id, details[exhibit_id]["query"])
                return ll, details[exhibit_id]["comparisons"]

            return self._lists.get_or(key, make)

    def leads(self, exhibit_id: str, top: int | None = None) -> dict:
        """The lead list JSON of an exhibit, with the current dispositions."""
        from dataclasses import replace

        from ..index import Disposition

        top = self.top if top is None else top
        if not 1 <= top <= 1000:
            raise _ApiError(400, "top must be between 1 and 1000")
        ll, _ = self._lead_list(exhibit_id, top)
        with self._lock:
            on_file = self.db.reviews.of(exhibit_id)
        leads = tuple(replace(l, extra={**l.extra, "disposition": on_file.get(l.id, Disposition(exhibit_id, l.id)).to_dict()})
                      for l in ll.leads)
        d = replace(ll, leads=leads).to_dict()
        with self._lock:
            d["query"]["metadata"] = dict(self.db.get(exhibit_id).metadata)
        return d

    def figure(self, query_id: str, lead_id: str) -> bytes:
        """PNG of one lead's pictures (the lead must be in the query's lead list)."""
        from ..engine import load_prepared
        from ._report import lead_picture

        with self._lock:
            found = next((c for (q, _, _), c in reversed(self._lists.items())
                          if q == query_id and any(l.id == lead_id for l in c[0].leads)), None)
            ll, comparisons = found if found is not None else self._lead_list(query_id, self.top)
            lead = next((l for l in ll.leads if l.id == lead_id), None)
            if lead is None:
                raise _ApiError(404, f"{lead_id!r} is not in the lead list of {query_id!r}")
            key = (query_id, lead_id, ll.database_exhibits)

            def make():
                qprep = self._prepared.get_or(query_id, lambda: load_prepared(self.db, query_id))
                pic = lead_picture(self.db, qprep, lead, query_id=query_id, kind=ll.kind,
                                   comparison=comparisons.get(lead_id))
                if pic.png is None:
                    raise _ApiError(422, pic.note)
                return pic.png

            return self._figures.get_or(key, make)

    def record(self, body: dict) -> dict:
        from ..engine import record_disposition
        from ..errors import ExhibitNotFoundError

        missing = [k for k in ("query", "lead", "status") if not isinstance(body.get(k), str)]
        if missing:
            raise _ApiError(400, f"missing or non-text field(s): {', '.join(missing)}")
        by = body.get("by")
        if by is not None and not isinstance(by, str):
            raise _ApiError(400, "by must be text")
        with self._lock:
            try:
                d = record_disposition(self.db, body["query"], body["lead"], body["status"],
                                       comment=body.get("comment") or "", user=(by or "").strip() or self.user)
            except ExhibitNotFoundError as e:
                raise _ApiError(404, str(e)) from None
            except ValueError as e:
                raise _ApiError(400, str(e)) from None
        return {"query": d.query, "lead": d.lead, **d.to_dict()}

    def history(self, query_id: str, lead_id: str) -> list[dict]:
        with self._lock:
            return [{"query": d.query, "lead": d.lead, **d.to_dict()} for d in self.db.reviews.history(query_id, lead_id)]

    def hits(self) -> dict:
        with self._lock:
            return {"hits": [h.to_dict() for h in self.db.reviews.hits()],
                    "linked_groups": self.db.reviews.linked_groups()}

    def report_html(self, exhibit_id: str) -> str:
        from ..engine import SearchParams
        from ..errors import ExhibitNotFoundError
        from ._report import build_report, render_html

        with self._lock:
            try:
                rep = build_report(self.db, exhibit_id=exhibit_id,
                                   params=SearchParams(top=self.top, candidates=max(self.candidates, self.top)))
            except ExhibitNotFoundError as e:
                raise _ApiError(404, str(e)) from None
        return render_html(rep)


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _statuses():
    from ..index import DISPOSITION_STATUSES

    return DISPOSITION_STATUSES


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    app: ReviewServer
    server_version = "ibin-review"
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers at shutdown

    # ------------------------------------------------------------------ plumbing
    def log_message(self, fmt, *args) -> None:  # quiet: to the library log, not stderr
        log.debug("%s %s", self.address_string(), fmt % args)

    def _host_ok(self) -> bool:
        if not self.app.loopback:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        port = self.app.port
        allowed = {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", f"{str(self.app.host).lower()}:{port}"}
        return host in allowed

    def _send(self, status: int, body: bytes, ctype: str, *, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False, allow_nan=False).encode("utf-8"),
                   "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _params(self) -> tuple[str, dict[str, str]]:
        u = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query, keep_blank_values=True).items()}
        return u.path, q

    @staticmethod
    def _need(q: dict, *names: str) -> list[str]:
        missing = [n for n in names if not q.get(n)]
        if missing:
            raise _ApiError(400, f"missing parameter(s): {', '.join(missing)}")
        return [q[n] for n in names]

    # ------------------------------------------------------------------ verbs
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._host_ok():
            return self._error(HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")
        path, q = self._params()
        try:
            if path in _STATIC:
                name, ctype = _STATIC[path]
                body = resources.files("ibin.report").joinpath("static", name).read_bytes()
                return self._send(200, body, ctype)
            if path == "/favicon.ico":
                return self._send(204, b"", "image/x-icon")
            if path == "/api/info":
                return self._json(200, self.app.info())
            if path == "/api/exhibits":
                return self._json(200, self.app.exhibits())
            if path == "/api/leads":
                (eid,) = self._need(q, "id")
                top = q.get("top")
                try:
                    top_n = int(top) if top else None
                except ValueError:
                    raise _ApiError(400, f"top must be a whole number, got {top!r}") from None
                return self._json(200, _finite(self.app.leads(eid, top_n)))
            if path == "/api/figure":
                qid, lid = self._need(q, "query", "lead")
                return self._send(200, self.app.figure(qid, lid), "image/png")
            if path == "/api/history":
                qid, lid = self._need(q, "query", "lead")
                return self._json(200, self.app.history(qid, lid))
            if path == "/api/hits":
                return self._json(200, self.app.hits())
            if path == "/api/report":
                (eid,) = self._need(q, "id")
                name = "".join(c if c.isalnum() or c in "._-" else "_" for c in eid)
                return self._send(200, self.app.report_html(eid).encode("utf-8"), "text/html; charset=utf-8",
                                  extra={"Content-Disposition": f'attachment; filename="{name}-report.html"'})
            return self._error(404, f"no such page: {path}")
        except _ApiError as e:
            return self._error(e.status, str(e))
        except BrokenPipeError:
            return None
        except Exception as e:  # noqa: BLE001 - a request must never take the server down
            log.exception("GET %s failed", self.path)
            return self._error(500, f"{type(e).__name__}: {e}")

    def do_POST(self) -> None:
        if not self._host_ok():
            return self._error(HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")
        path, _ = self._params()
        origin = self.headers.get("Origin")
        if origin is not None and origin.rstrip("/") != f"http://{self.headers.get('Host', '')}":
            return self._error(403, "cross-origin writes are refused")
        if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            return self._error(415, "send JSON (Content-Type: application/json)")
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self._error(400, "bad Content-Length")
        if n > _MAX_BODY:
            return self._error(413, "request too large")
        raw = self.rfile.read(n)
        try:
            body = json.loads(raw.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return self._error(400, f"invalid JSON ({e})")
        if not isinstance(body, dict):
            return self._error(400, "send a JSON object")
        try:
            if path == "/api/disposition":
                return self._json(200, self.app.record(body))
            return self._error(404, f"no such endpoint: {path}")
        except _ApiError as e:
            return self._error(e.status, str(e))
        except Exception as e:  # noqa: BLE001
            log.exception("POST %s failed", self.path)
            return self._error(500, f"{type(e).__name__}: {e}")


def _finite(obj):
    """Replace non-finite floats (failed leads score -inf) by None so the JSON is strict."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
