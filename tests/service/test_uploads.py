"""Tests of the artifact archive unpacker: good layouts pass, hostile archives are refused."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile

import pytest

from campaignrl.service.uploads import MAX_MEMBERS, ArchiveRefused, unpack_artifact

TYPES = (tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE)
FILES = {"manifest.json": b'{"a": 1}', "weights.npz": b"\x00" * 100}


def tar_of(entries, compression: str = "") -> bytes:
    """``entries``: (name, bytes) for files, or (name, TarInfo type, linkname)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry[0])
            if entry[1] not in TYPES:
                info.size = len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
            else:
                info.type = entry[1]
                info.linkname = entry[2] if len(entry) > 2 else ""
                tar.addfile(info)
    return buffer.getvalue()


def zip_of(entries, mode: int | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            z.writestr(info, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        tar_of(FILES.items()),
        tar_of(FILES.items(), "gz"),
        tar_of(FILES.items(), "bz2"),
        tar_of(FILES.items(), "xz"),
        tar_of([("policy", tarfile.DIRTYPE), *((f"policy/{k}", v) for k, v in FILES.items())]),
        tar_of([("./manifest.json", FILES["manifest.json"]), ("./weights.npz", b"\x00" * 100)]),
        zip_of(FILES.items()),
        zip_of([(f"p/{k}", v) for k, v in FILES.items()]),
    ],
    ids=["tar", "tgz", "tbz2", "txz", "tar-folder", "tar-dot", "zip", "zip-folder"],
)
def test_good_archives_unpack_to_the_files(tmp_path, data):
    unpack_artifact(data, tmp_path, limit=10_000)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == FILES


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", r"the upload is empty"),
        (b"not an archive at all", r"not a readable tar archive"),
        (b"PK\x03\x04garbage", r"not a readable zip archive"),
        (b"\x1f\x8bgarbage", r"not a readable compressed archive"),
        (tar_of([("../evil", b"x")]), r"'\.\./evil': '\.\.' \(path traversal\)"),
        (tar_of([("a/../../evil", b"x")]), r"path traversal"),
        (tar_of([("/etc/evil", b"x")]), r"'/etc/evil': absolute paths are refused"),
        (zip_of([("../evil", b"x")]), r"path traversal"),
        (zip_of([("/abs", b"x")]), r"absolute paths are refused"),
        (zip_of([("C:/x", b"x")]), r"absolute paths are refused"),
        (zip_of([("a\\b", b"x")]), r"not a plain relative path"),
        (tar_of([("link", tarfile.SYMTYPE, "/etc/passwd")]), r"'link' is a symlink"),
        (tar_of([("hard", tarfile.LNKTYPE, "/etc/passwd")]), r"'hard' is a hard link"),
        (tar_of([("dev", tarfile.CHRTYPE)]), r"'dev' is a device or special file"),
        (tar_of([("fifo", tarfile.FIFOTYPE)]), r"'fifo' is a device or special file"),
        (zip_of([("link", b"/etc/passwd")], mode=0o120777), r"'link' is not a regular file"),
        (tar_of([("a/b/c", b"x")]), r"an artifact is flat"),
        (tar_of([("a/x", b"x"), ("b/y", b"y")]), r"at the top level or in one folder"),
        (tar_of([("x", b"x"), ("b/y", b"y")]), r"at the top level or in one folder"),
        (zip_of([("x", b"1"), ("./x", b"2")]), r"'./x': the file is in the archive twice"),
        (tar_of([("bad name", b"x")]), r"names may hold only letters"),
        (tar_of([(f"f{i}", b"x") for i in range(MAX_MEMBERS + 1)]), r"more than 64"),
        (zip_of([(f"f{i}", b"x") for i in range(MAX_MEMBERS + 1)]), r"more than 64"),
        (tar_of([("big", b"x" * 2000)]), r"'big' is 2000 bytes, more than 1500"),
        (zip_of([("big", b"x" * 2000)]), r"'big' is 2000 bytes, more than 1500"),
        (tar_of([("a", b"x" * 1000), ("b", b"x" * 1000)]), r"unpacks to more than 1500"),
        (tar_of([("a", tarfile.DIRTYPE)]), r"holds no files"),
    ],
)
def test_hostile_archives_are_refused(tmp_path, data, match):
    with pytest.raises(ArchiveRefused, match=match):
        unpack_artifact(data, tmp_path, limit=1500)
    assert not any(p.is_symlink() for p in tmp_path.iterdir())
    assert not (tmp_path.parent / "evil").exists()


def test_a_compression_bomb_stops_at_the_limit(tmp_path):
    # 50 MB of zeros compress to ~50 kB: refused after limit + 1 decompressed bytes.
    bomb = gzip.compress(b"\x00" * 50_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(ArchiveRefused, match=r"unpacks to more than 100000 bytes"):
        unpack_artifact(bomb, tmp_path, limit=100_000)


def test_zip_bomb_member_counts_real_bytes(tmp_path):
    # A member whose header lies about its size still stops at the limit when inflated.
    data = bytearray(zip_of([("w", b"\x00" * 10_000)]))
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")  # claimed size: 10 bytes
    with pytest.raises(ArchiveRefused):
        unpack_artifact(bytes(data), tmp_path, limit=5000)
