"""A corpus of malformed inputs for ``ibin ingest``, each with the refusal it must get.

Every case is made here, from code, so the corpus needs no files of its own:
damaged and hostile zip archives (truncations, flipped bits, zip bombs,
absurd declared sizes), ``main.xml`` documents that are not ISO 25178-72 or
declare impossible things, unknown units, data that does not fit the
declared matrix, surfaces that cannot be compared (all missing, constant,
too small, too coarse), images of the wrong bit depth, damaged ``.npy``
files, files that are not scans, a folder, and metadata, ids and user names
that are not clean text.

:func:`build` writes the corpus to a folder and returns :class:`Case` s:
the ``ibin ingest`` arguments after the database path, and a regular
expression the error message must match. Used by
``tests/test_robust_input.py`` and ``benchmarks/robustness.py``.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NS = "http://www.opengps.eu/2008/ISO5436_2"


@dataclass(frozen=True)
class Case:
    """One malformed input: ``ibin ingest DB *args`` must fail with a message matching ``expect``."""

    name: str
    args: list[str]
    expect: str
    file: Path | None = None  # the input the message must name (None: a metadata or argument problem)
    note: str = field(default="")


# ---------------------------------------------------------------------------- X3P building blocks


def _axis(name: str, axis_type: str = "I", data_type: str = "D", inc: str | float = 1e-6) -> str:
    inc_el = f"<Increment>{inc}</Increment>" if axis_type == "I" or name == "CZ" else ""
    dt = f"<DataType>{data_type}</DataType>" if data_type else ""
    return f"<{name}><AxisType>{axis_type}</AxisType>{dt}{inc_el}<Offset>0.0</Offset></{name}>"


def main_xml(*, cols: int, rows: int, layers: int = 1, feature: str = "SUR", inc_x: str | float = 12.5e-6,
             inc_y: str | float | None = None, cx: tuple = ("I", "D"), cy: tuple = ("I", "D"), cz: tuple = ("A", "D"),
             data_md5: str | None = None, datums: list[str] | None = None, valid: tuple[str, str] | None = None,
             record1: bool = True, record3: bool = True, root: str = "p:ISO5436_2", prolog: str = "",
             dims: str | None = None) -> bytes:
    """An ISO 25178-72 ``main.xml`` with every field settable (defaults: a valid binary surface)."""
    inc_y = inc_x if inc_y is None else inc_y
    r1 = (f"<Record1><Revision>ISO25178-72:2017/DAM1</Revision><FeatureType>{feature}</FeatureType><Axes>"
          f"{_axis('CX', cx[0], cx[1], inc_x)}{_axis('CY', cy[0], cy[1], inc_y)}{_axis('CZ', cz[0], cz[1], 1.0)}"
          "</Axes></Record1>") if record1 else ""
    if dims is None:
        dims = f"<MatrixDimension><SizeX>{cols}</SizeX><SizeY>{rows}</SizeY><SizeZ>{layers}</SizeZ></MatrixDimension>"
    if datums is not None:
        data = "<DataList>" + "".join(f"<Datum>{d}</Datum>" for d in datums) + "</DataList>"
    else:
        v = (f"<ValidPointsLink>{valid[0]}</ValidPointsLink><MD5ChecksumValidPoints>{valid[1]}"
             "</MD5ChecksumValidPoints>") if valid else ""
        md5 = f"<MD5ChecksumPointData>{data_md5}</MD5ChecksumPointData>" if data_md5 else ""
        data = f"<DataLink><PointDataLink>bindata/data.bin</PointDataLink>{md5}{v}</DataLink>"
    r3 = f"<Record3>{dims}{data}</Record3>" if record3 else ""
    ns = f' xmlns:p="{NS}"' if root.startswith("p:") else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<{root}{ns}>{r1}{r3}'
            f"<Record4><ChecksumFile>md5checksum.hex</ChecksumFile></Record4></{root}>").encode()


def pack(members: list[tuple[str, bytes]], *, compress: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive of ``members`` in order."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as z:
        for name, content in members:
            z.writestr(name, content)
    return buf.getvalue()


def x3p(main: bytes, data: bytes | None, *, extra: list[tuple[str, bytes]] = (), checksum: bytes | None = None,
        compress: int = zipfile.ZIP_DEFLATED) -> bytes:
    """An X3P container: main.xml, its MD5 checksum file, the data file and any extra members."""
    md5 = hashlib.md5(main).hexdigest() if checksum is None else checksum.decode()
    members = [("main.xml", main), ("md5checksum.hex", f"{md5} *main.xml\n".encode())]
    if data is not None:
        members.append(("bindata/data.bin", data))
    return pack(members + list(extra), compress=compress)


def surface_x3p(z_m: np.ndarray, *, inc: float = 12.5e-6, **kw) -> bytes:
    """A valid binary-data X3P of heights ``z_m`` (metres), with ``main_xml`` overrides in ``kw``."""
    data = np.ascontiguousarray(z_m, dtype="<f8").tobytes()
    main = main_xml(cols=z_m.shape[1], rows=z_m.shape[0], inc_x=inc, data_md5=hashlib.md5(data).hexdigest(), **kw)
    return x3p(main, data)


def _patch_sizes(blob: bytes, member: str, size: int) -> bytes:
    """Set a member's declared uncompressed size in both its local header and the central directory."""
    b = bytearray(blob)
    name = member.encode()
    # (signature, offset of the name length, of the name, of the uncompressed size)
    for sig, at_len, at_name, at_size in ((b"PK\x03\x04", 26, 30, 22),   # local file headers
                                          (b"PK\x01\x02", 28, 46, 24)):  # central directory entries
        pos = 0
        while True:
            pos = b.find(sig, pos)
            if pos < 0:
                break
            n = struct.unpack("<H", b[pos + at_len: pos + at_len + 2])[0]
            if bytes(b[pos + at_name: pos + at_name + n]) == name:
                b[pos + at_size: pos + at_size + 4] = struct.pack("<I", size)
            pos += 4
    return bytes(b)


def _set_encrypted(blob: bytes, member: str) -> bytes:
    b = bytearray(blob)
    name = member.encode()
    for sig, flag_at, name_len_at, name_at in ((b"PK\x03\x04", 6, 26, 30), (b"PK\x01\x02", 8, 28, 46)):
        pos = 0
        while (pos := b.find(sig, pos)) >= 0:
            n = struct.unpack("<H", b[pos + name_len_at: pos + name_len_at + 2])[0]
            if bytes(b[pos + name_at: pos + name_at + n]) == name:
                b[pos + flag_at] |= 0x1
            pos += 4
    return bytes(b)


def _flip_in_member(blob: bytes, member: str) -> bytes:
    """Flip one byte in the middle of a member's compressed data."""
    zf = zipfile.ZipFile(io.BytesIO(blob))
    info = zf.getinfo(member)
    b = bytearray(blob)
    n, m = struct.unpack("<HH", b[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + n + m
    b[start + info.compress_size // 2] ^= 0x5A
    return bytes(b)


def _png_header(width: int, height: int, bits: int = 8, colour: int = 0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = zlib.compress(b"\0" * 64)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
            + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))


# ---------------------------------------------------------------------------- the corpus


def build(folder: Path) -> list[Case]:
    """Write every malformed input into ``folder`` and return the cases (names are unique)."""
    import cv2

    from ibin.scan import save_x3p
    from ibin.synth import cartridge_case

    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(name: str, content: bytes | None, expect: str, *, extra_args: tuple = (), note: str = "") -> None:
        p = folder / name
        if content is not None:
            p.write_bytes(content)
        cases.append(Case(name, [str(p), *extra_args], expect, p, note))

    scan, _ = cartridge_case(900, 0, pixel_um=12.5)
    good_path = folder / "_good.x3p"
    save_x3p(scan, good_path)
    good = good_path.read_bytes()
    good_path.unlink()
    z = np.nan_to_num(np.asarray(scan.values), nan=0.0) * 1e-6  # metres
    small = z[100:112, 100:116]
    data_small = np.ascontiguousarray(small, "<f8").tobytes()
    md5_small = hashlib.md5(data_small).hexdigest()
    rows, cols = small.shape

    # -- not zip archives, damaged archives
    add("empty.x3p", b"", r"empty")
    add("text.x3p", b"hello, I am a text file\n" * 10, r"zip archive")
    add("pdf.x3p", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << >> endobj\n", r"zip archive")
    add("truncated-half.x3p", good[: len(good) // 2], r"damaged|truncated")
    add("truncated-tail.x3p", good[:-10], r"damaged|truncated")
    add("truncated-head.x3p", good[:40], r"damaged|truncated")
    add("bitflip-data.x3p", _flip_in_member(good, "bindata/data.bin"), r"damaged|not a readable|CRC|checksum")
    tampered = zipfile.ZipFile(io.BytesIO(good))
    main_good = tampered.read("main.xml")
    data_good = tampered.read("bindata/data.bin")
    old_md5 = tampered.read("md5checksum.hex")[:32]
    add("main-md5-mismatch.x3p", x3p(main_good.replace(b"<Model>x3pio</Model>", b"<Model>x3pio-altered</Model>", 1), data_good, checksum=old_md5),
        r"checksum")
    bad_data = bytearray(data_good)
    bad_data[len(bad_data) // 2] ^= 0xFF
    add("data-md5-mismatch.x3p", x3p(main_good, bytes(bad_data)), r"checksum")
    add("no-main-xml.x3p", pack([("bindata/data.bin", data_small)]), r"main\.xml")
    add("office-document.x3p", pack([("[Content_Types].xml", b"<Types/>"), ("word/document.xml", b"<w/>")]),
        r"main\.xml")

    # -- zip bombs and absurd declared sizes (refused before anything is unpacked)
    zeros = bytes(8 * 1024 * 1024)
    add("bomb-ratio.x3p", x3p(main_xml(cols=1024, rows=1024, data_md5=hashlib.md5(zeros).hexdigest()), zeros),
        r"zip bomb")
    add("bomb-main-xml.x3p",
        x3p(main_xml(cols=cols, rows=rows, data_md5=md5_small).replace(b"<Record1>", b" " * (4 << 20) + b"<Record1>"),
            data_small), r"zip bomb")
    add("bomb-declared-size.x3p",
        _patch_sizes(x3p(main_xml(cols=cols, rows=rows, data_md5=md5_small), data_small), "bindata/data.bin",
                     0xFFFFFFF0), r"GiB|zip bomb")
    add("many-members.x3p", x3p(main_xml(cols=cols, rows=rows, data_md5=md5_small), data_small,
                                extra=[(f"junk/{i}.txt", b"x") for i in range(300)]), r"members")
    add("encrypted-member.x3p",
        _set_encrypted(x3p(main_xml(cols=cols, rows=rows, data_md5=md5_small), data_small), "bindata/data.bin"),
        r"encrypted")
    add("absurd-matrix.x3p", x3p(main_xml(cols=1_000_000, rows=1_000_000), data_small), r"declares .* grid")
    add("absurd-layers.x3p", x3p(main_xml(cols=cols, rows=rows, layers=100_000_000), data_small), r"declares .* grid")

    # -- data that does not fit the declared matrix
    add("data-short.x3p", x3p(main_xml(cols=cols, rows=rows), data_small[:-8]), r"bytes")
    add("data-long.x3p", x3p(main_xml(cols=cols, rows=rows), data_small + b"\0" * 8), r"bytes")
    add("layers-mismatch.x3p", x3p(main_xml(cols=cols, rows=rows, layers=3), data_small), r"bytes")
    add("datalist-count.x3p",
        x3p(main_xml(cols=4, rows=3, datums=["1e-6"] * 11), None), r"Datum")
    add("datalist-text.x3p",
        x3p(main_xml(cols=4, rows=3, datums=["1e-6"] * 11 + ["twelve"]), None), r"Datum|number")
    add("valid-wrong-size.x3p",
        x3p(main_xml(cols=cols, rows=rows, valid=("bindata/valid.bin", hashlib.md5(b"\xff").hexdigest())),
            data_small, extra=[("bindata/valid.bin", b"\xff")]), r"validity")
    add("data-missing.x3p", x3p(main_xml(cols=cols, rows=rows), None), r"missing")

    # -- main.xml that is not ISO 25178-72
    add("main-binary.x3p", x3p(bytes(range(256)) * 4, data_small), r"XML")
    add("main-html.x3p", x3p(b"<html><body>not a surface</body></html>", data_small), r"root element")
    laughs = ('<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
              '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>')
    add("billion-laughs.x3p",
        x3p(main_xml(cols=cols, rows=rows, prolog=laughs).replace(b"<Record4>", b"<Note>&lol3;</Note><Record4>"),
            data_small), r"XML|entit|DTD")
    xxe = '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    add("external-entity.x3p",
        x3p(main_xml(cols=cols, rows=rows, prolog=xxe).replace(b"<Record4>", b"<Note>&x;</Note><Record4>"),
            data_small), r"XML|entit|DTD")
    add("no-record1.x3p", x3p(main_xml(cols=cols, rows=rows, record1=False), data_small), r"Record1")
    add("no-record3.x3p", x3p(main_xml(cols=cols, rows=rows, record3=False), data_small), r"Record3")
    add("profile.x3p", x3p(main_xml(cols=cols * rows, rows=1, feature="PRF"), data_small), r"profile")
    pts = np.ascontiguousarray(np.stack([np.arange(12.0), np.arange(12.0), np.zeros(12)], 1) * 1e-6, "<f8").tobytes()
    add("point-cloud.x3p",
        x3p(main_xml(cols=0, rows=0, feature="PCL", cx=("A", "D"), cy=("A", "D"),
                     dims="<ListDimension>12</ListDimension>"), pts), r"point ?cloud")
    add("feature-unknown.x3p", x3p(main_xml(cols=cols, rows=rows, feature="XYZ"), data_small), r"FeatureType")
    add("datatype-unknown.x3p", x3p(main_xml(cols=cols, rows=rows, cz=("A", "Q")), data_small), r"DataType")
    add("axistype-unknown.x3p", x3p(main_xml(cols=cols, rows=rows, cx=("Z", "D")), data_small), r"AxisType")
    add("z-incremental.x3p", x3p(main_xml(cols=cols, rows=rows, cz=("I", "D")), data_small), r"z axis")
    add("increment-zero.x3p", x3p(main_xml(cols=cols, rows=rows, inc_x=0.0), data_small), r"Increment")
    add("increment-text.x3p", x3p(main_xml(cols=cols, rows=rows, inc_x="six microns"), data_small), r"number")
    xz = np.zeros(small.size, dtype=[("x", "<f8"), ("z", "<f8")])
    xz["x"] = np.tile(np.arange(cols) * 12.5e-6, rows)
    add("irregular-grid.x3p",
        x3p(main_xml(cols=cols, rows=rows, cx=("A", "D")), xz.tobytes()), r"irregular")

    # -- units ibin does not know
    add("unit-increment-huge.x3p", surface_x3p(z, inc=5000.0), r"unknown unit")
    add("unit-increment-tiny.x3p", surface_x3p(z, inc=1e-13), r"unknown unit")
    add("unit-heights-not-metres.x3p", surface_x3p(z * 1e6), r"heights span")
    add("unit-axes-disagree.x3p", surface_x3p(z, inc=12.5e-6, inc_y=12.5), r"disagree")

    # -- surfaces that cannot be compared
    add("all-missing.x3p", surface_x3p(np.full((64, 64), np.nan)), r"no measured point")
    add("constant.x3p", surface_x3p(np.zeros_like(z)), r"constant|flat")
    add("too-small.x3p", surface_x3p(z[:24, :24]), r"covers only")
    add("too-coarse.x3p", surface_x3p(z[::8, ::8], inc=100e-6), r"too coarse")
    add("one-row.x3p", surface_x3p(z[140:141, :]), r"covers only")
    patch = np.full_like(z, np.nan)
    r0, c0 = np.argwhere(np.isfinite(np.asarray(scan.values)[:-8, :-8])
                         & np.isfinite(np.asarray(scan.values)[8:, 8:]))[0]
    patch[r0:r0 + 8, c0:c0 + 8] = z[r0:r0 + 8, c0:c0 + 8]
    add("tiny-valid-region.x3p", surface_x3p(patch), r"region|covers|nothing to compare|constant|flat")
    masked = x3p(main_xml(cols=cols, rows=rows, data_md5=md5_small), data_small,
                 extra=[("bindata/mask.png", cv2.imencode(".png", np.full((5, 5), 255, np.uint8))[1].tobytes())])
    add("mask-wrong-size.x3p", masked, r"mask\.png")
    add("mask-not-png.x3p", x3p(main_xml(cols=cols, rows=rows, data_md5=md5_small), data_small,
                                extra=[("bindata/mask.png", b"GIF89a not a png")]), r"mask\.png")

    # -- images
    px = ("--pixel-um", "12.5")
    grey = (np.clip(np.nan_to_num(np.asarray(scan.values), nan=0.0) * 40 + 128, 0, 255)).astype(np.uint8)
    one_bit = cv2.imencode(".png", grey, [cv2.IMWRITE_PNG_BILEVEL, 1])[1].tobytes()
    add("one-bit.png", one_bit, r"1-bit", extra_args=px)
    add("float32.tif", cv2.imencode(".tiff", grey.astype(np.float32))[1].tobytes(), r"32-bit", extra_args=px)
    add("float64.tif", cv2.imencode(".tiff", grey.astype(np.float64))[1].tobytes(), r"64-bit", extra_args=px)
    add("int32.tif", cv2.imencode(".tiff", grey.astype(np.int32))[1].tobytes(), r"32-bit", extra_args=px)
    png = cv2.imencode(".png", grey)[1].tobytes()
    add("truncated.png", png[: len(png) // 3], r"damaged|readable", extra_args=px)
    add("jpeg-named-png.png", cv2.imencode(".jpg", grey)[1].tobytes(), r"not a PNG", extra_args=px)
    add("png-bomb.png", _png_header(100_000, 100_000), r"declares", extra_args=px)
    add("png-zero-size.png", _png_header(0, 10), r"declares|damaged|readable", extra_args=px)
    add("tiny.png", cv2.imencode(".png", grey[:8, :8])[1].tobytes(), r"covers only", extra_args=px)
    add("constant.png", cv2.imencode(".png", np.full((300, 300), 128, np.uint8))[1].tobytes(), r"constant|flat",
        extra_args=px)
    add("no-pixel-size.png", png, r"pixel size")
    add("pixel-size-negative.png", png, r"positive", extra_args=("--pixel-um", "-3"))

    # -- .npy height maps
    def npy(arr, **kw) -> bytes:
        b = io.BytesIO()
        np.save(b, arr, **kw)
        return b.getvalue()

    add("object.npy", npy(np.array([[object(), 1]], dtype=object), allow_pickle=True), r"object|numbers",
        extra_args=px)
    add("three-d.npy", npy(np.zeros((4, 5, 6))), r"2-D", extra_args=px)
    add("complex.npy", npy(np.zeros((40, 40), complex)), r"numbers", extra_args=px)
    add("strings.npy", npy(np.array([["a", "b"], ["c", "d"]])), r"numbers", extra_args=px)
    whole = npy(np.zeros((300, 300)))
    add("truncated.npy", whole[: len(whole) // 2], r"truncated|bytes", extra_args=px)
    hdr = npy(np.zeros((2, 2)))
    add("npy-absurd-shape.npy", hdr.replace(b"(2, 2)", b"(99999999, 99999)"), r"refused|bytes", extra_args=px)
    add("npy-garbage-header.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': <f8'}   \n" + b"\0" * 64, r"readable",
        extra_args=px)

    # -- not scans at all, and paths that are not files
    add("notes.txt", b"case notes\n", r"unknown scan type")
    add("model.stl", b"solid x\nendsolid x\n", r"unknown scan type")
    add("no-suffix", b"\x00" * 100, r"unknown scan type")
    (folder / "a-folder.x3p").mkdir(exist_ok=True)
    cases.append(Case("a-folder.x3p", [str(folder / "a-folder.x3p")], r"folder", folder / "a-folder.x3p"))
    cases.append(Case("missing.x3p", [str(folder / "missing.x3p")], r"no such file", folder / "missing.x3p"))

    # -- metadata, ids and user names that are not clean text (a valid scan each time)
    ok = folder / "_ok.x3p"
    save_x3p(cartridge_case(901, 0, pixel_um=12.5)[0], ok)
    for name, args, expect in [
        ("meta-control-char", ["--meta", "case=a\x01b"], r"control character"),
        ("meta-nul", ["--meta", "case=a\x1bb"], r"control character"),
        ("meta-newline", ["--meta", "case=line1\nline2"], r"control character"),
        ("meta-bidi-override", ["--meta", "case=12\u202e34"], r"control character"),
        ("meta-surrogate", ["--meta", "case=\udcff"], r"surrogate"),
        ("meta-too-long", ["--meta", "case=" + "x" * 5000], r"longer than"),
        ("meta-empty-key", ["--meta", "=value"], r"KEY=VALUE"),
        ("meta-no-equals", ["--meta", "novalue"], r"KEY=VALUE"),
        ("meta-blank-key", ["--meta", "  =value"], r"KEY=VALUE"),
        ("id-newline", ["--id", "Q1\nQ2"], r"control character"),
        ("id-blank", ["--id", "   "], r"must not be empty"),
        ("user-control", ["--user", "ex\x07aminer"], r"control character"),
        ("ids-count", ["--id", "a", "--id", "b"], r"--id given"),
    ]:
        cases.append(Case(name, [str(ok), *args], expect, None))
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases

