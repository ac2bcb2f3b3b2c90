"""Scans: loading, validating and carrying measured surfaces with their units.

A :class:`Scan` is the first stage of ibin's pipeline (``scan`` -> ``features``
-> ``index`` / ``correlate`` -> ``leads``). It holds one measured surface on a
regular grid together with its lateral spacing in micrometres, so that every
later stage can work in physical units. Three file types are read:

* ISO 25178-72 X3P files (through x3pio), heights in µm;
* 2-D images (PNG, TIFF, BMP; 8 or 16 bit), intensity in [0, 1]; the pixel
  size must be given, because images do not state it;
* ``.npy`` height maps in µm; the pixel size must be given.

Every problem with a file raises :class:`~ibin.errors.ScanError`, whose message
names the file and says what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping

import numpy as np

from .errors import ScanError

__all__ = [
    "Scan",
    "load_scan",
    "read_x3p",
    "read_image",
    "read_npy",
    "save_x3p",
    "IMAGE_SUFFIXES",
    "MAX_FILE_BYTES",
    "MAX_GRID_POINTS",
]

log = logging.getLogger(__name__)

Modality = Literal["height", "intensity"]
LengthUnit = Literal["auto", "m", "um"]

#: File suffixes read as 2-D images.
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")
#: Largest scan file accepted (bytes); a larger file is refused before it is read.
MAX_FILE_BYTES = 2 * 1024**3
#: Largest grid accepted (points); 20k x 20k covers a whole cartridge head at 0.3 µm/px.
MAX_GRID_POINTS = 400_000_000

# An x3p lateral increment of 1 mm or more per point is not a toolmark
# measurement in metres: such files (written by x3ptools after
# ``x3p_m_to_mum``) hold micrometres. See ``_x3p_length_scale``.
_METRE_INCREMENT_LIMIT = 1e-3


@dataclass(frozen=True, eq=False)
class Scan:
    """One measured surface on a regular grid, with its physical spacing.

    Parameters
    ----------
    values : ndarray, shape (rows, cols)
        Heights in micrometres (``modality="height"``) or intensities in
        ``[0, 1]`` (``modality="intensity"``). Rows run along y, columns along
        x. ``NaN`` marks a point that was not measured or is masked out.
    pixel_x_um, pixel_y_um : float
        Spacing of columns and of rows, in micrometres.
    modality : {"height", "intensity"}
        What the values are.
    source : str, optional
        The file the scan was read from.
    sha256 : str, optional
        SHA-256 of the source file's bytes (hex), for the chain of custody.
    info : mapping of str to str
        What the file says about the measurement (instrument, date, ...) and
        how ibin read it (``length_unit``, ``mask``).
    """

    values: np.ndarray
    pixel_x_um: float
    pixel_y_um: float
    modality: Modality = "height"
    source: str | None = None
    sha256: str | None = None
    info: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v = np.asarray(self.values)
        if v.ndim != 2:
            raise ScanError(self.source, f"a scan must be a 2-D grid, got an array of shape {v.shape}")
        if not np.issubdtype(v.dtype, np.floating):
            v = v.astype(np.float64)
        if v.size == 0:
            raise ScanError(self.source, "the grid is empty")
        for name in ("pixel_x_um", "pixel_y_um"):
            p = getattr(self, name)
            if not (isinstance(p, (int, float, np.floating)) and math.isfinite(p) and p > 0):
                raise ScanError(self.source, f"{name} must be a positive number of micrometres, got {p!r}")
            object.__setattr__(self, name, float(p))
        if self.modality not in ("height", "intensity"):
            raise ScanError(self.source, f"modality must be 'height' or 'intensity', got {self.modality!r}")
        v = np.where(np.isfinite(v), v, np.nan)  # +-inf are points not measured
        if not np.isfinite(v).any():
            raise ScanError(self.source, "the scan holds no measured point (all values are missing)")
        v.setflags(write=False)
        object.__setattr__(self, "values", v)
        object.__setattr__(self, "info", dict(self.info))

    @property
    def shape(self) -> tuple[int, int]:
        """Grid shape ``(rows, cols)``."""
        return self.values.shape  # type: ignore[return-value]

    @property
    def mask(self) -> np.ndarray:
        """Boolean array, True where a value was measured."""
        return np.isfinite(self.values)

    @property
    def extent_um(self) -> tuple[float, float]:
        """Physical size ``(height_um, width_um)`` of the grid."""
        return self.shape[0] * self.pixel_y_um, self.shape[1] * self.pixel_x_um

    @property
    def name(self) -> str:
        """The source file's stem, or ``"scan"`` for an in-memory scan."""
        return Path(self.source).stem if self.source else "scan"


# --------------------------------------------------------------------------- loading


def load_scan(
    path: str | os.PathLike,
    *,
    pixel_um: float | None = None,
    length_unit: LengthUnit = "auto",
) -> Scan:
    """Read a scan file of any supported type.

    Parameters
    ----------
    path : str or path-like
        An ``.x3p`` file, an image (``.png``, ``.tif``, ``.tiff``, ``.bmp``)
        or a ``.npy`` height map.
    pixel_um : float, optional
        Lateral spacing in micrometres. Required for images and ``.npy``
        files, which do not state it; refused for X3P files, which do.
    length_unit : {"auto", "m", "um"}
        Unit of the lengths stored in an X3P file. ISO 25178-72 prescribes
        metres; ``"auto"`` also accepts files written in micrometres (see
        :func:`read_x3p`).

    Returns
    -------
    Scan

    Raises
    ------
    ScanError
        If the file is missing, unreadable, of an unknown type or damaged;
        the message names the file and the problem.
    """
    p = Path(path)
    data = _read_bytes(p)
    kind = _sniff(p, data)
    if kind == "x3p":
        if pixel_um is not None:
            raise ScanError(p, "an X3P file states its own pixel size; do not pass pixel_um (--pixel-um)")
        return read_x3p(p, length_unit=length_unit, _data=data)
    if kind == "npy":
        return read_npy(p, pixel_um=pixel_um, _data=data)
    return read_image(p, pixel_um=pixel_um, _data=data)


def _read_bytes(p: Path) -> bytes:
    try:
        if p.is_dir():
            raise ScanError(p, "is a folder, not a scan file")
        size = p.stat().st_size
    except FileNotFoundError:
        raise ScanError(p, "no such file") from None
    except PermissionError:
        raise ScanError(p, "permission denied") from None
    except OSError as e:
        raise ScanError(p, f"cannot be read ({e.strerror or e})") from None
    if size == 0:
        raise ScanError(p, "is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ScanError(p, f"is {size / 1024**3:.1f} GiB; files over {MAX_FILE_BYTES // 1024**3} GiB are refused")
    try:
        return p.read_bytes()
    except OSError as e:
        raise ScanError(p, f"cannot be read ({e.strerror or e})") from None


def _sniff(p: Path, data: bytes) -> str:
    suffix = p.suffix.lower()
    head = data[:8]
    if suffix == ".x3p":
        if not head.startswith(b"PK"):
            raise ScanError(p, "is not an X3P file: an X3P file is a zip archive, and this one does not start like one")
        return "x3p"
    if suffix == ".npy":
        if not head.startswith(b"\x93NUMPY"):
            raise ScanError(p, "is not a NumPy .npy file (wrong magic bytes)")
        return "npy"
    if suffix in IMAGE_SUFFIXES:
        if not (
            head.startswith(b"\x89PNG\r\n\x1a\n")
            or head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
            or head.startswith(b"BM")
        ):
            raise ScanError(p, f"is not a {suffix[1:].upper()} image (its first bytes do not match the format)")
        return "image"
    raise ScanError(
        p,
        f"unknown scan type {suffix or '(no suffix)'!r}; expected .x3p, .npy or an image "
        f"({', '.join(IMAGE_SUFFIXES)})",
    )


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data`` as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- X3P


def read_x3p(path: str | os.PathLike, *, length_unit: LengthUnit = "auto", _data: bytes | None = None) -> Scan:
    """Read an ISO 25178-72 (X3P) surface file.

    The lateral increments and heights are converted to micrometres. The
    standard prescribes metres, but files in the wild (for example those
    written by x3ptools after ``x3p_m_to_mum``) store micrometres. With
    ``length_unit="auto"`` a lateral increment of 1 mm or more is read as
    micrometres, since no areal toolmark instrument samples that coarsely,
    and the heights are then read in micrometres too; the decision is
    recorded in ``Scan.info["length_unit"]``. Pass ``"m"`` or ``"um"`` to
    state the unit instead.

    A ``bindata/mask.png`` in the x3ptools convention is honoured: where
    ``main.xml`` names a background colour, only points of that colour are
    kept and annotated regions (grooves, break-off, ...) become missing;
    otherwise a transparent (alpha 0) or black mask point is missing. The
    ISO validity layer, ``NaN`` and infinite values are missing too.

    Parameters
    ----------
    path : str or path-like
        The ``.x3p`` file.
    length_unit : {"auto", "m", "um"}
        Unit of the stored lengths.

    Returns
    -------
    Scan
        ``modality="height"``, values in µm.
    """
    import x3pio

    p = Path(path)
    data = _read_bytes(p) if _data is None else _data
    if length_unit not in ("auto", "m", "um"):
        raise ValueError(f"length_unit must be 'auto', 'm' or 'um', got {length_unit!r}")
    members = _x3p_members(p, data)
    try:
        x3p = x3pio.X3pFile.loads(data)
    except x3pio.X3pChecksumError as e:
        raise ScanError(p, f"is damaged: a stored checksum does not match its content ({e})") from None
    except x3pio.X3pFormatError as e:
        if "root element" in str(e):
            x3p = _read_legacy_root(p, data, members)
        else:
            raise ScanError(p, f"is not a readable X3P file: {e}") from None
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError, IndexError) as e:
        raise ScanError(p, f"is not a readable X3P file: {type(e).__name__}: {e}") from None
    kind = type(x3p).__name__
    if kind != "Surface":
        raise ScanError(
            p,
            f"holds a {kind.lower()}, not an areal surface; ibin compares gridded surfaces "
            "(FeatureType SUR)",
        )
    if not x3p.is_regular_grid:
        raise ScanError(p, "holds an irregular grid (absolute x or y axis); ibin needs a regular grid")
    layer = x3p.layers[0]
    z = np.array(layer.z, dtype=np.float64)
    if z.ndim != 2:
        raise ScanError(p, f"the surface data has {z.ndim} dimensions, expected 2")
    if z.size > MAX_GRID_POINTS:
        raise ScanError(p, f"the grid has {z.size} points; more than {MAX_GRID_POINTS} are refused")
    valid = getattr(layer, "valid", None)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape == z.shape:
            z[~valid] = np.nan
    inc_x = abs(float(x3p.header.x.increment))
    inc_y = abs(float(x3p.header.y.increment)) if x3p.header.y is not None else inc_x
    z_inc = x3p.header.z.increment if x3p.header.z is not None else None
    # x3pio applies the z increment; a z increment other than 1 is reported for the record.
    unit = _x3p_length_unit(p, inc_x, inc_y, length_unit)
    scale = 1e6 if unit == "m" else 1.0
    info: dict[str, str] = {"format": "x3p", "length_unit": unit}
    if z_inc not in (None, 1, 1.0):
        info["z_increment"] = repr(z_inc)
    if len(x3p.layers) > 1:
        info["layers"] = f"{len(x3p.layers)} (the first is used)"
    _x3p_metadata(x3p, info)
    mask_note = _apply_x3p_mask(p, data, members, z)
    if mask_note:
        info["mask"] = mask_note
    return Scan(
        values=z * scale,
        pixel_x_um=inc_x * scale,
        pixel_y_um=inc_y * scale,
        modality="height",
        source=str(p),
        sha256=sha256_hex(data),
        info=info,
    )


def _x3p_members(p: Path, data: bytes) -> dict[str, zipfile.ZipInfo]:
    """Names of the archive's members relative to the folder holding main.xml."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        raise ScanError(p, f"is not a readable X3P file: the zip archive is damaged ({e})") from None
    names = [i.filename for i in infos if "__MACOSX" not in i.filename and not Path(i.filename).name.startswith("._")]
    mains = [n for n in names if Path(n).name == "main.xml"]
    if not mains:
        raise ScanError(p, "is not an X3P file: the archive holds no main.xml")
    root = str(Path(min(mains, key=len)).parent)
    root = "" if root == "." else root + "/"
    out = {}
    for i in infos:
        if i.filename in names and i.filename.startswith(root):
            out[i.filename[len(root):]] = i
    return out


def _read_legacy_root(p: Path, data: bytes, members: dict[str, zipfile.ZipInfo]):
    """Read an X3P whose main.xml root is ``<ISO5436>`` (older x3ptools files).

    The document is the ISO 5436-2 layout under another root name; it is
    renamed to the standard's root element and handed to x3pio. The MD5 of
    ``main.xml`` no longer applies after the renaming, so the data file's
    checksum is verified here instead.
    """
    import x3pio

    zf = zipfile.ZipFile(io.BytesIO(data))
    text = zf.read(members["main.xml"]).decode("utf-8", errors="replace")
    m = re.search(r"<\s*(ISO5436)(\s[^>]*)?>", text)
    if not m:
        raise ScanError(p, "main.xml has an unknown root element; it is not an ISO 25178-72 document")
    ns = 'xmlns:p="http://www.opengps.eu/2008/ISO5436_2"'
    text = text[: m.start()] + f"<p:ISO5436_2 {ns}>" + text[m.end():]
    text = re.sub(r"</\s*ISO5436\s*>", "</p:ISO5436_2>", text)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as w:
        for name, info in members.items():
            if name == "main.xml":
                w.writestr("main.xml", text.encode("utf-8"))
            elif name.lower() in ("md5checksum.hex",):
                continue
            elif not info.is_dir():
                w.writestr(name, zf.read(info))
    try:
        x3p = x3pio.X3pFile.loads(out.getvalue(), verify=True)
    except x3pio.X3pChecksumError as e:
        raise ScanError(p, f"is damaged: a stored checksum does not match its content ({e})") from None
    except x3pio.X3pFormatError as e:
        raise ScanError(p, f"is not a readable X3P file: {e}") from None
    return x3p


def _x3p_length_unit(p: Path, inc_x: float, inc_y: float, length_unit: str) -> str:
    if length_unit != "auto":
        return length_unit
    big = [inc >= _METRE_INCREMENT_LIMIT for inc in (inc_x, inc_y)]
    if big[0] != big[1]:
        raise ScanError(
            p,
            f"the x and y increments ({inc_x:g}, {inc_y:g}) disagree on their unit; "
            "state it with length_unit='m' or 'um'",
        )
    if big[0]:
        log.info("%s: lateral increment %g read as micrometres (x3ptools convention)", p, inc_x)
        return "um"
    return "m"


def _x3p_metadata(x3p, info: dict[str, str]) -> None:
    md = getattr(x3p, "metadata", None)
    if md is None:
        return
    inst = getattr(md, "instrument", None)
    if inst is not None:
        parts = [getattr(inst, a, None) for a in ("manufacturer", "model")]
        text = " ".join(str(s) for s in parts if s)
        if text:
            info["instrument"] = text
    for attr in ("creator", "comment"):
        v = getattr(md, attr, None)
        if v:
            info[attr] = str(v)
    d = getattr(md, "date", None)
    if d is not None:
        info["measured"] = d.isoformat() if hasattr(d, "isoformat") else str(d)


def _apply_x3p_mask(p: Path, data: bytes, members: dict[str, zipfile.ZipInfo], z: np.ndarray) -> str:
    """Blank the points a ``bindata/mask.png`` excludes; return a note, or ''."""
    name = next((n for n in members if n.lower().endswith("mask.png")), None)
    if name is None:
        return ""
    import cv2

    zf = zipfile.ZipFile(io.BytesIO(data))
    raw = np.frombuffer(zf.read(members[name]), np.uint8)
    img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ScanError(p, f"{name} is not a readable PNG image")
    if img.shape[:2] != z.shape:
        if img.shape[:2] == z.shape[::-1]:
            img = np.swapaxes(img, 0, 1)
        else:
            raise ScanError(
                p, f"{name} is {img.shape[0]} x {img.shape[1]} but the surface is {z.shape[0]} x {z.shape[1]}"
            )
    background = _mask_background(zf.read(members["main.xml"]).decode("utf-8", errors="replace"))
    if img.ndim == 2:
        keep = img > 0
        how = "non-zero points kept"
    else:
        alpha = img[..., 3] if img.shape[2] == 4 else None
        bgr = img[..., :3].astype(np.int32)
        if background is not None:
            r, g, b = background
            keep = (bgr[..., 2] == r) & (bgr[..., 1] == g) & (bgr[..., 0] == b)
            how = f"background colour #{r:02x}{g:02x}{b:02x} kept, annotated regions removed"
        else:
            keep = bgr.any(axis=-1)
            how = "non-black points kept"
        if alpha is not None:
            keep &= alpha > 0
    removed = int((~keep & np.isfinite(z)).sum())
    z[~keep] = np.nan
    return f"{name}: {how} ({removed} points removed)"


def _mask_background(main_xml: str) -> tuple[int, int, int] | None:
    m = re.search(r"<\s*(?:\w+:)?Mask\b.*?<\s*(?:\w+:)?Background\s*>\s*#?([0-9a-fA-F]{6})", main_xml, re.S)
    if not m:
        return None
    h = m.group(1)
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def save_x3p(scan: Scan, path: str | os.PathLike) -> None:
    """Write a height scan as an ISO 25178-72 file (lengths in metres).

    Parameters
    ----------
    scan : Scan
        A ``modality="height"`` scan (values in µm).
    path : str or path-like
        Destination ``.x3p`` file.
    """
    import x3pio

    if scan.modality != "height":
        raise ScanError(scan.source, "only height scans can be written as X3P")
    x3pio.write(
        os.fspath(path),
        np.asarray(scan.values, dtype=np.float64) * 1e-6,
        x_scale=scan.pixel_x_um * 1e-6,
        y_scale=scan.pixel_y_um * 1e-6,
    )


# --------------------------------------------------------------------------- images and arrays


def _need_pixel(p: Path, pixel_um: float | None, what: str) -> float:
    if pixel_um is None:
        raise ScanError(p, f"{what} does not state its pixel size; pass pixel_um (CLI: --pixel-um MICROMETRES)")
    try:
        v = float(pixel_um)
    except (TypeError, ValueError):
        raise ScanError(p, f"pixel_um must be a number of micrometres, got {pixel_um!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ScanError(p, f"pixel_um must be a positive number of micrometres, got {pixel_um!r}")
    return v


def read_image(path: str | os.PathLike, *, pixel_um: float | None, _data: bytes | None = None) -> Scan:
    """Read a 2-D grey-level image (8 or 16 bit PNG, TIFF or BMP).

    Parameters
    ----------
    path : str or path-like
        The image file.
    pixel_um : float
        Pixel size in micrometres (images do not state it).

    Returns
    -------
    Scan
        ``modality="intensity"``, values in ``[0, 1]``. Colour images are
        converted to grey (ITU-R BT.601 luma); fully transparent pixels of an
        image with an alpha channel are missing.
    """
    import cv2

    p = Path(path)
    px = _need_pixel(p, pixel_um, "an image")
    data = _read_bytes(p) if _data is None else _data
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ScanError(p, "is not a readable image (damaged or unsupported encoding)")
    if img.dtype == np.uint8:
        full = 255.0
    elif img.dtype == np.uint16:
        full = 65535.0
    else:
        raise ScanError(p, f"has {img.dtype} pixels; ibin reads 8-bit or 16-bit grey-level images")
    alpha = None
    if img.ndim == 3:
        if img.shape[2] == 4:
            alpha = img[..., 3] > 0
            img = img[..., :3]
        if img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif img.shape[2] == 1:
            img = img[..., 0]
        else:
            raise ScanError(p, f"has {img.shape[2]} channels; expected grey, RGB or RGBA")
    v = img.astype(np.float64) / full
    if alpha is not None:
        v[~alpha] = np.nan
    return Scan(
        values=v,
        pixel_x_um=px,
        pixel_y_um=px,
        modality="intensity",
        source=str(p),
        sha256=sha256_hex(data),
        info={"format": p.suffix.lower()[1:], "bit_depth": "8" if full == 255.0 else "16"},
    )


def read_npy(path: str | os.PathLike, *, pixel_um: float | None, _data: bytes | None = None) -> Scan:
    """Read a ``.npy`` height map (2-D, heights in micrometres, NaN = missing).

    Parameters
    ----------
    path : str or path-like
        The ``.npy`` file (no pickled objects are read).
    pixel_um : float
        Pixel size in micrometres (``.npy`` files do not state it).
    """
    p = Path(path)
    px = _need_pixel(p, pixel_um, "a .npy height map")
    data = _read_bytes(p) if _data is None else _data
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ScanError(p, f"is not a readable .npy array ({e})") from None
    if arr.ndim != 2:
        raise ScanError(p, f"holds an array of shape {arr.shape}; a height map must be 2-D")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ScanError(p, f"holds {arr.dtype} values; a height map must hold numbers")
    return Scan(
        values=arr.astype(np.float64),
        pixel_x_um=px,
        pixel_y_um=px,
        modality="height",
        source=str(p),
        sha256=sha256_hex(data),
        info={"format": "npy", "length_unit": "um"},
    )
