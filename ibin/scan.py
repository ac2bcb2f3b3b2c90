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
    "MAX_X3P_UNPACKED_BYTES",
    "MAX_ZIP_RATIO",
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

#: Most bytes an X3P archive may unpack to (all members, as declared in the zip
#: directory): a full-size grid of float64 heights plus validity, mask and XML.
MAX_X3P_UNPACKED_BYTES = MAX_GRID_POINTS * 8 + 256 * 1024**2
#: Largest ``main.xml`` accepted (declared size). XML-embedded data of a
#: 2000 x 2000 grid takes about 100 MB; binary data is the norm above that.
MAX_MAIN_XML_BYTES = 128 * 1024**2
#: Most members an X3P archive may hold (the standard needs four or five).
MAX_X3P_MEMBERS = 256
#: Highest compression ratio accepted for a member over 1 MiB. Real height
#: data deflates 1.4-4 times (Fadul, Hamby, synthetic scans); masked scans
#: with 99 % missing points about 100 times. A ratio near deflate's limit
#: (1032) is a zip bomb: refused before a byte is unpacked.
MAX_ZIP_RATIO = 250.0
#: Largest image accepted, in pixels (checked from the file header before decoding).
MAX_IMAGE_PIXELS = 200_000_000
# Lateral increments and heights outside these spans are in no unit ibin
# knows (stated in metres: 0.1 nm to 1 mm per point; heights over 10 cm).
_MIN_INCREMENT_M = 1e-10
_MAX_INCREMENT_UM = 1e3
_MAX_HEIGHT_SPAN_UM = 1e5

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
    _x3p_declared_grid(p, data)
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
    except MemoryError:
        raise ScanError(p, "is too large to read into memory") from None
    except Exception as e:  # noqa: BLE001 - hostile files must end in a ScanError, never a crash
        log.debug("x3pio failed on %s", p, exc_info=True)
        raise ScanError(p, f"is not a readable X3P file ({type(e).__name__}: {e})") from None
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
    _check_height_span(p, z, scale, unit)
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
    """Names of the archive's members relative to the folder holding main.xml.

    The zip directory is checked before anything is unpacked: member count,
    declared sizes (each, total, ``main.xml``), compression ratio (zip
    bombs), encryption, and members that lie past the end of the file.
    Python's zip reader never unpacks more than a member declares, so these
    checks bound the memory and time any archive can take.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, NotImplementedError) as e:
        raise ScanError(p, f"is not a readable X3P file: the zip archive is damaged ({e})") from None
    if len(infos) > MAX_X3P_MEMBERS:
        raise ScanError(p, f"the zip archive holds {len(infos)} members; an X3P file needs a handful "
                           f"(more than {MAX_X3P_MEMBERS} are refused)")
    total = 0
    for i in infos:
        if i.is_dir():
            continue
        where = f"zip member {i.filename!r}"
        if i.flag_bits & 0x1:
            raise ScanError(p, f"{where} is encrypted; ibin reads only unencrypted X3P files")
        if i.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
            raise ScanError(p, f"{where} uses an unsupported compression method ({i.compress_type})")
        if i.header_offset + i.compress_size > len(data):
            raise ScanError(p, f"is truncated or damaged: {where} extends past the end of the file")
        if i.compress_type == zipfile.ZIP_STORED and i.file_size != i.compress_size:
            raise ScanError(p, f"is damaged: {where} is stored uncompressed but declares two different sizes")
        if i.file_size > MAX_X3P_UNPACKED_BYTES:
            raise ScanError(p, f"{where} declares {i.file_size / 1024**3:.1f} GiB uncompressed; "
                               f"more than {MAX_X3P_UNPACKED_BYTES / 1024**3:.1f} GiB is refused")
        if i.file_size > 1024**2 and i.file_size > MAX_ZIP_RATIO * max(i.compress_size, 1):
            raise ScanError(p, f"{where} would unpack {i.file_size / max(i.compress_size, 1):.0f} times larger "
                               f"({i.file_size} bytes from {i.compress_size}): a zip bomb, not a measurement "
                               f"(more than {MAX_ZIP_RATIO:.0f} times is refused)")
        total += i.file_size
    if total > MAX_X3P_UNPACKED_BYTES:
        raise ScanError(p, f"the zip archive declares {total / 1024**3:.1f} GiB uncompressed in all; "
                           f"more than {MAX_X3P_UNPACKED_BYTES / 1024**3:.1f} GiB is refused")
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
    main = out.get("main.xml")
    if main is not None and main.file_size > MAX_MAIN_XML_BYTES:
        raise ScanError(p, f"main.xml declares {main.file_size / 1024**2:.0f} MiB; more than "
                           f"{MAX_MAIN_XML_BYTES // 1024**2} MiB of XML is refused")
    return out


def _x3p_declared_grid(p: Path, data: bytes) -> None:
    """Refuse a grid that ``main.xml`` declares too large, before its data are unpacked.

    Only ``main.xml`` is read (through ``x3pio.info``). Problems with the
    document itself are left to the full reader, which reports them.
    """
    import x3pio

    try:
        desc = x3pio.info(io.BytesIO(data), verify=False)
    except Exception:  # noqa: BLE001 - the full read below reports what is wrong
        return
    n = math.prod(desc.shape) * max(int(desc.layer_count), 1)
    if n > MAX_GRID_POINTS:
        shape = " x ".join(str(k) for k in desc.shape)
        raise ScanError(p, f"main.xml declares a {shape} grid of {desc.layer_count} layer(s), {n} points; "
                           f"more than {MAX_GRID_POINTS} are refused")


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
    for name, inc in (("x", inc_x), ("y", inc_y)):
        if not (math.isfinite(inc) and inc > 0):
            raise ScanError(p, f"the {name} increment {inc!r} is not a positive number")
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
        if max(inc_x, inc_y) > _MAX_INCREMENT_UM:
            raise ScanError(p, f"the lateral increments ({inc_x:g}, {inc_y:g}) are in an unknown unit: more than "
                               "1 mm per point read as micrometres, more than 1 m read as metres (ISO 25178-72 "
                               "prescribes metres); state the unit with length_unit='m' or 'um'")
        log.info("%s: lateral increment %g read as micrometres (x3ptools convention)", p, inc_x)
        return "um"
    if min(inc_x, inc_y) < _MIN_INCREMENT_M:
        raise ScanError(p, f"the lateral increments ({inc_x:g}, {inc_y:g}) are in an unknown unit: less than "
                           "0.1 nm per point read as metres (ISO 25178-72 prescribes metres); state the unit "
                           "with length_unit='m' or 'um'")
    return "m"


def _check_height_span(p: Path, z: np.ndarray, scale: float, unit: str) -> None:
    """Refuse heights that span more than 10 cm once read in ``unit``: the file's z unit is not that."""
    finite = z[np.isfinite(z)]
    if finite.size == 0:
        return  # the Scan refuses a surface with no measured point
    with np.errstate(over="ignore", invalid="ignore"):
        span = (float(finite.max()) - float(finite.min())) * scale
    if not span <= _MAX_HEIGHT_SPAN_UM:
        raise ScanError(p, f"the heights span {span:g} µm read in {'metres' if unit == 'm' else 'micrometres'}, "
                           "more than 10 cm: the height unit is not what the file's lateral increments "
                           "imply (state it with length_unit='m' or 'um')")


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
    try:
        blob = zf.read(members[name])
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as e:
        raise ScanError(p, f"{name} cannot be unpacked ({e})") from None
    head = image_header(blob)
    if head is None or head[0] * head[1] != z.size or _image_truncated(blob):
        raise ScanError(p, f"{name} is not a PNG image of the surface's size ({z.shape[0]} x {z.shape[1]})")
    img = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
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
    # divided, not multiplied by 1e-6 (inexact): the file then reads back to the same micrometres
    x3pio.write(
        os.fspath(path),
        np.asarray(scan.values, dtype=np.float64) / 1e6,
        x_scale=scan.pixel_x_um / 1e6,
        y_scale=scan.pixel_y_um / 1e6,
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
    head = image_header(data)
    if head is None:
        raise ScanError(p, "is not a readable image (its header is damaged or of an unsupported kind)")
    width, height, bits = head
    if width <= 0 or height <= 0:
        raise ScanError(p, f"the image header declares {width} x {height} pixels")
    if width * height > MAX_IMAGE_PIXELS:
        raise ScanError(p, f"the image header declares {width} x {height} pixels; more than "
                           f"{MAX_IMAGE_PIXELS} are refused")
    if bits is not None and bits not in (8, 16):
        raise ScanError(p, f"has {bits}-bit samples; ibin reads 8-bit or 16-bit grey-level images "
                           "(a scan's grey levels cannot be recovered from other depths)")
    if _image_truncated(data):
        raise ScanError(p, "is truncated: the image ends before its last chunk (damaged or incompletely copied)")
    with _no_opencv_warnings():
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ScanError(p, "is not a readable image (damaged or unsupported encoding)")
    if img.shape[:2] != (height, width):
        raise ScanError(p, f"decodes to {img.shape[0]} x {img.shape[1]} pixels but its header says "
                           f"{height} x {width}: the file is damaged")
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


def image_header(data: bytes) -> tuple[int, int, int | None] | None:
    """``(width, height, bits per sample)`` from a PNG, BMP or TIFF header, without decoding.

    ``bits`` is None when the header does not say (a TIFF without
    ``BitsPerSample`` in its first directory). Returns None when the header
    is not one of these or is damaged. Used to refuse absurd sizes and
    wrong bit depths before a decoder allocates anything.
    """
    import struct

    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            if data[12:16] != b"IHDR":
                return None
            w, h, bits, colour = struct.unpack(">IIBB", data[16:26])
            return w, h, (8 if colour == 3 and bits in (1, 2, 4, 8) else bits)  # palette indices become 8-bit grey
        if data[:2] == b"BM":
            w, h = struct.unpack("<ii", data[18:26])
            (bits,) = struct.unpack("<H", data[28:30])
            return w, abs(h), (8 if bits in (8, 24, 32) else bits)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            e = "<" if data[:2] == b"II" else ">"
            (ifd,) = struct.unpack(e + "I", data[4:8])
            (n,) = struct.unpack(e + "H", data[ifd : ifd + 2])
            entries = [struct.unpack(e + "HHI4s", data[ifd + 2 + 12 * k : ifd + 14 + 12 * k]) for k in range(n)]
            return _tiff_fields(entries, e, data, 4)
        if data[:4] in (b"II+\x00", b"MM\x00+"):
            e = "<" if data[:2] == b"II" else ">"
            (ifd,) = struct.unpack(e + "Q", data[8:16])
            (n,) = struct.unpack(e + "Q", data[ifd : ifd + 8])
            entries = [struct.unpack(e + "HHQ8s", data[ifd + 8 + 20 * k : ifd + 28 + 20 * k]) for k in range(n)]
            return _tiff_fields(entries, e, data, 8)
    except (struct.error, ValueError, IndexError):
        return None
    return None


def _image_truncated(data: bytes) -> bool:
    """True when a PNG lacks its end chunk or a BMP is shorter than its header says."""
    import struct

    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data.rfind(b"IEND") < 0
    if data[:2] == b"BM" and len(data) >= 6:
        return struct.unpack("<I", data[2:6])[0] > len(data)
    return False


def _tiff_fields(entries, e: str, data: bytes, inline: int) -> tuple[int, int, int | None] | None:
    import struct

    sizes = {1: 1, 3: 2, 4: 4, 16: 8}  # BYTE, SHORT, LONG, LONG8
    codes = {1: "B", 3: "H", 4: "I", 16: "Q"}
    found: dict[int, int] = {}
    for tag, typ, count, value in entries:
        if tag not in (256, 257, 258) or typ not in sizes or count < 1:
            continue
        if sizes[typ] * count <= inline:
            raw = value[: sizes[typ]]
        else:  # the values live elsewhere; all samples share a depth, so the first is enough
            (off,) = struct.unpack(e + ("I" if inline == 4 else "Q"), value[:inline])
            raw = data[off : off + sizes[typ]]
        (found[tag],) = struct.unpack(e + codes[typ], raw)
    if 256 not in found or 257 not in found:
        return None
    return found[256], found[257], found.get(258)


class _no_opencv_warnings:
    """Silence OpenCV's own stderr warnings about damaged images while decoding (we report them)."""

    def __enter__(self):
        import cv2

        try:
            self._level = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        except AttributeError:
            self._level = None
        return self

    def __exit__(self, *exc):
        import cv2

        if self._level is not None:
            cv2.utils.logging.setLogLevel(self._level)


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
    fmt = np.lib.format
    try:  # read the header first: shape and type are checked before anything is allocated
        buf = io.BytesIO(data)
        version = fmt.read_magic(buf)
        shape, fortran, dtype = (fmt.read_array_header_1_0(buf) if version == (1, 0)
                                 else fmt.read_array_header_2_0(buf))
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
        raise ScanError(p, f"is not a readable .npy array ({e})") from None
    if len(shape) != 2:
        raise ScanError(p, f"holds an array of shape {shape}; a height map must be 2-D")
    if dtype.hasobject or not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise ScanError(p, f"holds {dtype} values; a height map must hold numbers")
    n = math.prod(shape)
    if n > MAX_GRID_POINTS:
        raise ScanError(p, f"declares a {shape[0]} x {shape[1]} grid; more than {MAX_GRID_POINTS} points are refused")
    if len(data) - buf.tell() != n * dtype.itemsize:
        raise ScanError(p, f"declares {shape[0]} x {shape[1]} {dtype} values ({n * dtype.itemsize} bytes) but holds "
                           f"{len(data) - buf.tell()} bytes of data: truncated or damaged")
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
