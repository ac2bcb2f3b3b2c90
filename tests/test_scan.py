"""Loading scans: X3P (units, masks, damaged files), images, .npy; clear errors."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import x3pio

from ibin.errors import ScanError
from ibin.scan import Scan, load_scan, read_x3p, save_x3p

from .conftest import shared_path


def _x3p(path: Path, z_m: np.ndarray, inc: float, inc_y: float | None = None) -> Path:
    x3pio.write(str(path), z_m, x_scale=inc, y_scale=inc if inc_y is None else inc_y)
    return path


@pytest.mark.parametrize("name", [
    "ISO5436-sample1.x3p", "ISO5436-sample1_bin.x3p", "ISO5436-sample2.x3p", "ISO5436-sample3.x3p",
    "ISO5436-sample4.x3p", "ISO5436-sample4_bin.x3p", "KautschukInfiniteFocus.x3p", "SkiInfiniteFocus.x3p",
    "sample-land.x3p",
])
def test_every_reference_file_opens_or_fails_clearly(name):
    p = shared_path("x3p-samples", name)
    try:
        s = load_scan(p)
    except ScanError as e:
        assert str(p) in str(e) and e.problem
        # the only refusals are a point cloud and an irregular grid
        assert name in ("ISO5436-sample2.x3p", "ISO5436-sample3.x3p"), str(e)
        return
    assert s.values.ndim == 2 and s.pixel_x_um > 0 and s.sha256 and len(s.sha256) == 64
    assert np.isfinite(s.values).any()


def test_infinitefocus_units_are_micrometres():
    s = load_scan(shared_path("x3p-samples", "KautschukInfiniteFocus.x3p"))
    assert s.info["length_unit"] == "m"
    assert s.pixel_x_um == pytest.approx(2.28, abs=0.01)
    # heights in µm: a rubber surface measured at 2.3 µm/px varies by microns, not metres
    assert 1.0 < np.nanmax(s.values) - np.nanmin(s.values) < 1000.0


def test_x3ptools_file_with_legacy_root_and_mask():
    s = load_scan(shared_path("x3p-samples", "sample-land.x3p"))
    assert s.shape == (256, 918)
    assert s.pixel_x_um == pytest.approx(2.58)
    assert "mask.png" in s.info["mask"]
    # annotated regions (grooves, break-off) are removed, background kept
    frac = np.isfinite(s.values).mean()
    assert 0.4 < frac < 0.8


def test_fadul_file():
    s = load_scan(shared_path("cartridge", "fadul", "Fadul_1-1.x3p"))
    assert s.pixel_x_um == pytest.approx(6.25)
    assert 0.2 < np.isfinite(s.values).mean() < 0.4
    assert np.nanstd(s.values) == pytest.approx(np.nanstd(s.values), rel=1e-9) and 0.5 < np.nanstd(s.values) < 10


@pytest.mark.parametrize("inc,unit,px", [(6.25e-6, "m", 6.25), (6.25, "um", 6.25), (1.5625e-6, "m", 1.5625)])
def test_x3p_increment_unit_detected(tmp_path, inc, unit, px):
    z = np.random.default_rng(0).normal(size=(20, 30)) * (1e-6 if unit == "m" else 1.0)
    s = load_scan(_x3p(tmp_path / "a.x3p", z, inc))
    assert s.info["length_unit"] == unit
    assert s.pixel_x_um == pytest.approx(px)
    assert np.nanstd(s.values) == pytest.approx(1.0, rel=0.3)  # heights in µm either way


def test_x3p_unit_can_be_stated(tmp_path):
    z = np.zeros((10, 10))
    p = _x3p(tmp_path / "a.x3p", z, 6.25)
    assert read_x3p(p, length_unit="m").pixel_x_um == pytest.approx(6.25e6)


def test_x3p_nonsquare_pixels_kept(tmp_path):
    s = load_scan(_x3p(tmp_path / "a.x3p", np.zeros((10, 12)), 2e-6, 3e-6))
    assert (s.pixel_x_um, s.pixel_y_um) == pytest.approx((2.0, 3.0))


def test_save_and_reload_roundtrip(tmp_path):
    v = np.random.default_rng(1).normal(size=(16, 16))
    v[3, 4] = np.nan
    save_x3p(Scan(v, 6.25, 6.25), tmp_path / "r.x3p")
    s = load_scan(tmp_path / "r.x3p")
    np.testing.assert_allclose(s.values, v, atol=1e-9)
    # the spacing comes back to the bit: 6.25 * 1e-6 is written 6.2499999999999995e-06 and read 6.249999999999999,
    # and a grid of an odd number of rows then halves to one row fewer at 12.5 µm/px
    for px in (6.25, 1.5625, 3.125, 0.8, 10.0):
        save_x3p(Scan(v, px, 2 * px), tmp_path / "p.x3p")
        s = load_scan(tmp_path / "p.x3p")
        assert (s.pixel_x_um, s.pixel_y_um) == (px, 2 * px)


@pytest.mark.parametrize("dtype,full", [(np.uint8, 255), (np.uint16, 65535)])
def test_images(tmp_path, dtype, full):
    import cv2

    img = (np.arange(200, dtype=np.float64).reshape(10, 20) / 199 * full).astype(dtype)
    cv2.imwrite(str(tmp_path / "i.png"), img)
    s = load_scan(tmp_path / "i.png", pixel_um=3.0)
    assert s.modality == "intensity" and s.pixel_x_um == 3.0
    assert s.values.min() == 0 and s.values.max() == pytest.approx(1.0)
    with pytest.raises(ScanError, match="pixel size"):
        load_scan(tmp_path / "i.png")


def test_float_image_refused(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "f.tif"), np.ones((10, 10), np.float32))
    with pytest.raises(ScanError, match="8-bit or 16-bit"):
        load_scan(tmp_path / "f.tif", pixel_um=1.0)


def test_npy(tmp_path):
    np.save(tmp_path / "h.npy", np.ones((12, 12)))
    s = load_scan(tmp_path / "h.npy", pixel_um=2.0)
    assert s.modality == "height" and s.pixel_x_um == 2.0
    np.save(tmp_path / "h3.npy", np.ones((2, 3, 4)))
    with pytest.raises(ScanError, match="2-D"):
        load_scan(tmp_path / "h3.npy", pixel_um=1.0)
    with pytest.raises(ScanError, match="pixel size"):
        load_scan(tmp_path / "h.npy")


def _corrupt(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_bad_files_name_the_file_and_problem(tmp_path):
    good = _x3p(tmp_path / "g.x3p", np.zeros((10, 10)), 1e-6).read_bytes()
    cases = {
        "missing.x3p": None,
        "empty.x3p": b"",
        "text.x3p": b"hello, I am not a zip archive",
        "truncated.x3p": good[: len(good) // 2],
        "noscan.txt": b"x",
        "fake.png": b"not a png at all",
        "fake.npy": b"\x00\x01\x02",
    }
    for name, data in cases.items():
        p = tmp_path / name if data is None else _corrupt(tmp_path, name, data)
        with pytest.raises(ScanError) as ei:
            load_scan(p, pixel_um=1.0) if p.suffix in (".png", ".npy") else load_scan(p)
        assert str(p) in str(ei.value), name
    with pytest.raises(ScanError, match="folder"):
        load_scan(tmp_path)


def test_zip_without_main_xml(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bindata/data.bin", b"\0" * 80)
    p = _corrupt(tmp_path, "nomain.x3p", buf.getvalue())
    with pytest.raises(ScanError, match="main.xml"):
        load_scan(p)


def test_all_missing_surface_refused(tmp_path):
    with pytest.raises(ScanError, match="no measured point"):
        Scan(np.full((10, 10), np.nan), 1.0, 1.0)
    p = _x3p(tmp_path / "nan.x3p", np.full((10, 10), np.nan), 1e-6)
    with pytest.raises(ScanError, match="no measured point"):
        load_scan(p)


def test_scan_validates_pixel_size():
    with pytest.raises(ScanError, match="positive"):
        Scan(np.zeros((4, 4)), 0.0, 1.0)
    with pytest.raises(ScanError, match="positive"):
        Scan(np.zeros((4, 4)), float("nan"), 1.0)


def test_scan_is_read_only():
    s = Scan(np.zeros((4, 4)), 1.0, 1.0)
    with pytest.raises(ValueError):
        s.values[0, 0] = 1.0
