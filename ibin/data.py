"""The sample scans shipped in the repository's ``data/`` folder, checked by SHA-256."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import ScanError

__all__ = ["SAMPLES", "sample_path", "data_dir"]

#: file name -> (firearm, role, SHA-256)
SAMPLES: dict[str, tuple[str, str, str]] = {
    "Fadul_1-1.x3p": ("slide-1", "known", "c21f8b595e34cb42b073bc163e3331d6d5107283b1d2b2f6c16645c3deea88ae"),
    "Fadul_1-2.x3p": ("slide-1", "known", "e542a06304c621a965212add72e6dc283069749e24d743ed846b87f461438be3"),
    "Fadul_2-1.x3p": ("slide-2", "known", "ca16872083b37719bb7c0299f426925ebaf517c30aa6d4e39bee948ec75dcffc"),
    "Fadul_2-2.x3p": ("slide-2", "known", "70baa0a4b424baac68e97b40b10797374fd7c0b8d607c64fc7b5b5732ff4f8e2"),
    "Fadul_3-1.x3p": ("slide-3", "known", "f6d552ec9ec155902089254ef38c818f31e791ba1f3d6d35c09f2a8e6240c490"),
    "Fadul_3-2.x3p": ("slide-3", "known", "ffd620e8041ff9d7da64b7bd32429a25608e1d48dbb21c194f4c5cfb8f187232"),
    "Fadul_4-1.x3p": ("slide-4", "known", "95c752e62ceca0437fc71ae89571943a52e2cbc170e82d54d9575575a77b9510"),
    "Fadul_4-2.x3p": ("slide-4", "known", "787ab392b43d8c63157d422983040c0f9117756b7d07f3cfb5031a34e6270016"),
    "Fadul_F.x3p": ("slide-1", "questioned", "e32cb2f9e8b12808ab1909d0e0b915eafda209070ce7282c2eb7a9b883f65c83"),
    "Fadul_C.x3p": ("slide-2", "questioned", "cae015a5b170970bee2a33105c4fd1e42aa77db1b75073ffeb3b53ad4d8d692e"),
}


def data_dir() -> Path:
    """The repository's ``data/fadul`` folder (present in a source checkout)."""
    return Path(__file__).resolve().parent.parent / "data" / "fadul"


def sample_path(name: str) -> Path:
    """Path of a shipped sample scan, after checking its SHA-256.

    Raises
    ------
    ScanError
        If the file is missing (an installed package without the source
        tree) or its content does not match the recorded hash.
    """
    if name not in SAMPLES:
        raise KeyError(f"no sample named {name!r}; known: {', '.join(SAMPLES)}")
    p = data_dir() / name
    if not p.exists():
        raise ScanError(p, "sample scan missing (the data/ folder ships with the source checkout)")
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    if digest != SAMPLES[name][2]:
        raise ScanError(p, f"sample scan damaged: SHA-256 {digest} does not match the recorded hash")
    return p
