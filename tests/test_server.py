"""The review page's server: its JSON API over HTTP on an ephemeral loopback port (urllib), and the CLI."""

from __future__ import annotations

import http.client
import json
import shutil
import urllib.error
import urllib.parse
import urllib.request

import pytest

from ibin.engine import open_database
from ibin.report import ReviewServer


@pytest.fixture()
def server(review_db, tmp_path):
    db = tmp_path / "db"
    shutil.copytree(review_db.path, db)
    srv = ReviewServer(db, port=0, user="examiner-1", top=3).start()
    try:
        yield srv
    finally:
        srv.shutdown()


def _get(srv, path, **params):
    url = srv.url.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.status, r.headers, r.read()


def _get_json(srv, path, **params):
    status, headers, body = _get(srv, path, **params)
    assert headers["Content-Type"].startswith("application/json")
    return json.loads(body)


def _post(srv, path, body, *, ctype="application/json", headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(srv.url.rstrip("/") + path, data=data, method="POST",
                                 headers={"Content-Type": ctype, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _status(srv, path, **params):
    try:
        return _get(srv, path, **params)[0]
    except urllib.error.HTTPError as e:
        return e.code


def test_page_and_static_files(server):
    assert server.url.startswith("http://127.0.0.1:") and server.loopback
    status, headers, body = _get(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    html = body.decode()
    assert 'src="review.js"' in html and 'id="disposition-form"' in html
    assert "default-src 'none'" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"
    for f in ("/review.js", "/review.css"):
        assert _get(server, f)[0] == 200
    assert _status(server, "/../../etc/passwd") == 404
    assert _status(server, "/static/review.html") == 404


def test_info_exhibits_and_lead_list(server):
    info = _get_json(server, "/api/info")
    assert info["exhibits"] == 4 and info["user"] == "examiner-1"
    assert info["statuses"] == ["not reviewed", "no hit", "hit"]
    ex = _get_json(server, "/api/exhibits")
    assert [e["id"] for e in ex] == ["f0-s0", "f0-s1", "f1-s0", "f1-s1"]
    assert ex[0]["metadata"]["case"] == "case-A" and ex[0]["hit"] == 0
    ll = _get_json(server, "/api/leads", id="f0-s0")
    assert ll["query"]["id"] == "f0-s0" and ll["query"]["metadata"]["case"] == "case-A"
    assert [l["rank"] for l in ll["leads"]] == [1, 2, 3] and ll["leads"][0]["id"] == "f0-s1"
    assert all(l["disposition"]["status"] == "not reviewed" for l in ll["leads"])
    assert len(_get_json(server, "/api/leads", id="f0-s0", top=1)["leads"]) == 1


def test_figure_is_a_png(server):
    status, headers, body = _get(server, "/api/figure", query="f0-s0", lead="f0-s1")
    assert status == 200 and headers["Content-Type"] == "image/png" and body[:8] == b"\x89PNG\r\n\x1a\n"
    assert _get(server, "/api/figure", query="f0-s0", lead="f0-s1")[2] == body  # cached, identical


def test_record_disposition_round_trip(server):
    status, d = _post(server, "/api/disposition",
                      {"query": "f0-s0", "lead": "f0-s1", "status": "hit", "comment": "firing-pin drag agrees", "by": "ann"})
    assert status == 200 and d["status"] == "hit" and d["by"] == "ann" and d["at"]
    ll = _get_json(server, "/api/leads", id="f0-s1")  # seen from the other exhibit
    lead = next(l for l in ll["leads"] if l["id"] == "f0-s0")
    assert lead["disposition"]["status"] == "hit" and lead["disposition"]["comment"] == "firing-pin drag agrees"
    status, d = _post(server, "/api/disposition", {"query": "f0-s0", "lead": "f1-s0", "status": "no hit"})
    assert status == 200 and d["by"] == "examiner-1"  # no name given: the server's default examiner
    hist = _get_json(server, "/api/history", query="f0-s1", lead="f0-s0")
    assert [h["status"] for h in hist] == ["hit"]
    hits = _get_json(server, "/api/hits")
    assert [sorted(h["exhibits"]) for h in hits["hits"]] == [["f0-s0", "f0-s1"]]
    assert hits["hits"][0]["links_cases"] is True
    ex = {e["id"]: e for e in _get_json(server, "/api/exhibits")}
    assert ex["f0-s0"]["hit"] == 1 and ex["f0-s0"]["no hit"] == 1 and ex["f1-s1"]["hit"] == 0
    # it is in the catalog, for every other reader
    db = open_database(server.db.path, readonly=True)
    try:
        assert db.reviews.get("f0-s1", "f0-s0").status == "hit"
        assert db.reviews.get("f1-s0", "f0-s0").by == "examiner-1"
    finally:
        db.close()


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"query": "f0-s0", "lead": "f0-s1", "status": "probably"}, 400, "unknown disposition"),
        ({"query": "f0-s0", "lead": "zz", "status": "hit"}, 404, "no exhibit 'zz'"),
        ({"query": "f0-s0", "status": "hit"}, 400, "missing"),
        ({"query": "f0-s0", "lead": "f0-s1", "status": "hit", "by": 3}, 400, "by must be text"),
        ([1, 2], 400, "JSON object"),
    ],
)
def test_bad_dispositions(server, body, status, message):
    got, answer = _post(server, "/api/disposition", body)
    assert got == status and message in answer["error"]
    assert _get_json(server, "/api/hits")["hits"] == []


def test_writes_must_be_same_origin_json(server):
    body = {"query": "f0-s0", "lead": "f0-s1", "status": "hit"}
    assert _post(server, "/api/disposition", json.dumps(body).encode(), ctype="text/plain")[0] == 415
    assert _post(server, "/api/disposition", body, headers={"Origin": "http://evil.example"})[0] == 403
    assert _post(server, "/api/disposition", b"{nope")[0] == 400
    assert _get_json(server, "/api/hits")["hits"] == []
    # same origin is fine
    origin = server.url.rstrip("/")
    assert _post(server, "/api/disposition", body, headers={"Origin": origin})[0] == 200


def test_foreign_host_header_is_refused(server):
    """DNS rebinding: a page on another name that resolves to 127.0.0.1 gets nothing."""
    c = http.client.HTTPConnection(server.host, server.port, timeout=30)
    c.request("GET", "/api/exhibits", headers={"Host": f"attacker.example:{server.port}"})
    r = c.getresponse()
    assert r.status == 421 and b"Host" in r.read()
    c.close()


def test_errors_are_json(server):
    assert _status(server, "/api/leads") == 400
    assert _status(server, "/api/leads", id="zz") == 404
    assert _status(server, "/api/leads", id="f0-s0", top="x") == 400
    assert _status(server, "/api/figure", query="f0-s0", lead="f0-s0") == 404  # not its own lead
    assert _status(server, "/api/nothing") == 404


def test_report_download(server):
    status, headers, body = _get(server, "/api/report", id="f1-s0")
    assert status == 200 and "attachment" in headers["Content-Disposition"] and "f1-s0-report.html" in headers["Content-Disposition"]
    assert b"Lead list for f1-s0" in body and b"data:image/png;base64," in body


def test_serve_cli_refuses_a_bad_port(review_db, capsys):
    from ibin.cli import main

    assert main(["serve", str(review_db.path), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err


def test_serve_cli_runs_until_interrupted(review_db, tmp_path, monkeypatch, capsys):
    from ibin.cli import main

    db = tmp_path / "db"
    shutil.copytree(review_db.path, db)
    seen = {}

    def fake_serve(self):
        seen["url"] = self.url
        raise KeyboardInterrupt

    monkeypatch.setattr(ReviewServer, "serve_forever", fake_serve)
    assert main(["serve", str(db), "--port", "0"]) == 0
    out = capsys.readouterr().out
    assert seen["url"] in out and "4 exhibits" in out


def test_ipv6_loopback(review_db, tmp_path):
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    db = tmp_path / "db"
    shutil.copytree(review_db.path, db)
    try:
        srv = ReviewServer(db, host="::1", port=0)
    except OSError as e:
        pytest.skip(f"cannot bind ::1 here ({e})")
    with srv:
        srv.start()
        assert srv.loopback and srv.url.startswith("http://[::1]:")
        assert _get_json(srv, "/api/info")["exhibits"] == 4


def test_serve_process_answers_and_stops_on_sigterm(review_db, tmp_path):
    import re
    import signal
    import subprocess
    import sys

    db = tmp_path / "db"
    shutil.copytree(review_db.path, db)
    with subprocess.Popen([sys.executable, "-c", "import sys; from ibin.cli import main; sys.exit(main(sys.argv[1:]))",
                           "serve", str(db), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        try:
            line = proc.stdout.readline()
            url = re.search(r"http://\S+", line).group(0)
            with urllib.request.urlopen(url + "api/info", timeout=60) as r:
                assert json.loads(r.read())["exhibits"] == 4
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
