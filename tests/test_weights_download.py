"""`mfs-fast weights get official` without the internet: a Drive-like server on 127.0.0.1
(confirmation page or cookie, Range, a dropped connection), offline and stalled networks, and
hostile or corrupt archives (nothing may land outside the store's temporary folder)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import stat
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import official_reference as ref
from fake_drive import DriveState, FakeDrive, SilentServer, closed_port
from mfs_fast import cli
from mfs_fast.archive import Limits, extract
from mfs_fast.checkpoints import ARCFACE_FILE, SWAP_FILE, load_official, load_weights
from mfs_fast.download import Fetch, confirmation_url, fetch
from mfs_fast.errors import ArchiveError, CheckpointError, DownloadError, UnsafeCheckpointError
from mfs_fast.official_release import URL_ENV, get_official, record_path


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "home"
    monkeypatch.setenv("MFS_FAST_HOME", str(folder))
    return folder


@pytest.fixture
def drive():
    server = FakeDrive(DriveState(payload=os.urandom(3 << 20)))
    yield server
    server.stop()


def quick(**kw) -> Fetch:
    return Fetch(**{"max_bytes": 64 << 20, "timeout": 5.0, "backoff": 0.0, "progress": False, **kw})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------ download


def test_form_confirmation_page_then_file(drive, tmp_path):
    out = fetch(drive.url, tmp_path / "file", quick())
    assert out.read_bytes() == drive.state.payload
    paths = [p.split("?")[0] for p, _ in drive.state.requests]
    assert paths == ["/uc", "/download"]
    assert not (tmp_path / "file.part").exists()


def test_cookie_confirmation(drive, tmp_path):
    drive.state.mode = "cookie"
    assert fetch(drive.url, tmp_path / "file", quick()).read_bytes() == drive.state.payload
    assert "confirm=cookieToken42" in drive.state.requests[-1][0]


def test_dropped_connection_is_resumed_with_range(drive, tmp_path):
    drive.state.drop_first = True
    assert fetch(drive.url, tmp_path / "file", quick()).read_bytes() == drive.state.payload
    assert drive.state.dropped == 1
    half = len(drive.state.payload) // 2
    assert drive.state.requests[-1][1] == f"bytes={half}-"


def test_interrupted_download_resumes_on_the_next_run(drive, tmp_path):
    drive.state.drop_first = True
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        fetch(drive.url, tmp_path / "file", quick(retries=0))
    half = len(drive.state.payload) // 2
    assert (tmp_path / "file.part").stat().st_size == half
    assert fetch(drive.url, tmp_path / "file", quick()).read_bytes() == drive.state.payload
    assert drive.state.requests[-1][1] == f"bytes={half}-"


def test_server_without_range_support_rewrites_the_partial_file(drive, tmp_path):
    drive.state.honour_range = False
    (tmp_path / "file.part").write_bytes(b"stale bytes from another file")
    assert fetch(drive.url, tmp_path / "file", quick()).read_bytes() == drive.state.payload


def test_size_limit(drive, tmp_path):
    with pytest.raises(DownloadError, match="over the 1.0 MB limit"):
        fetch(drive.url, tmp_path / "file", quick(max_bytes=1_000_000))
    assert list(tmp_path.iterdir()) == []


def test_quota_page_is_a_clear_error(drive, tmp_path):
    drive.state.mode = "quota"
    with pytest.raises(DownloadError, match="Quota exceeded.*by hand"):
        fetch(drive.url, tmp_path / "file", quick(manual_hint="; or download it by hand"))


def test_offline_is_a_clear_error(tmp_path):
    started = time.monotonic()
    with pytest.raises(DownloadError, match="cannot reach 127.0.0.1.*check the internet connection"):
        fetch(f"http://127.0.0.1:{closed_port()}/uc?id=x", tmp_path / "file", quick())
    assert time.monotonic() - started < 5


def test_stalled_server_times_out(tmp_path):
    server = SilentServer()
    try:
        started = time.monotonic()
        with pytest.raises(DownloadError, match="did not answer within 0.5 s"):
            fetch(f"http://127.0.0.1:{server.port}/uc", tmp_path / "file", quick(timeout=0.5))
        assert time.monotonic() - started < 5
    finally:
        server.stop()


def test_confirmation_never_downgrades_https():
    import http.cookiejar

    page = '<form action="http://evil.example/download"><input type="hidden" name="confirm" value="t"></form>'
    assert confirmation_url(page, "https://drive.google.com/uc?id=x", http.cookiejar.CookieJar()) is None
    page = page.replace("http://evil.example", "https://drive.usercontent.google.com")
    assert confirmation_url(page, "https://drive.google.com/uc?id=x", http.cookiejar.CookieJar()) == \
        "https://drive.usercontent.google.com/download?confirm=t"


# ------------------------------------------------------------------------------- the official release


@pytest.fixture(scope="session")
def release(tmp_path_factory, seed):
    """Random checkpoints in the official layout (int8 values: the loader admits any numeric dtype and
    the archive stays ~72 MB instead of ~290), zipped like a release made on a Mac."""
    folder = tmp_path_factory.mktemp("release") / "checkpoints"
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for name, layout in ((SWAP_FILE, ref.swap_layout()), (ARCFACE_FILE, ref.arcface_layout())):
        state = {k: rng.integers(-20, 20, size=shape, dtype=np.int8) for k, (_, shape) in layout.items()}
        ref.write_official_pdparams(state, folder / name)
    archive = folder.parent / "MobileFaceSwap.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for name in (SWAP_FILE, ARCFACE_FILE):
            zf.write(folder / name, f"checkpoints/{name}")
        zf.writestr(f"__MACOSX/checkpoints/._{ARCFACE_FILE}", b"resource fork")
    return archive, folder


def store_entries(home: Path) -> list[str]:
    models = home / "models"
    return sorted(p.name for p in models.iterdir()) if models.exists() else []


def test_get_official_from_drive(home, drive, release, monkeypatch, capsys):
    archive, folder = release
    drive.state.payload = archive.read_bytes()
    drive.state.drop_first = True
    monkeypatch.setenv(URL_ENV, drive.url)
    assert cli.main(["weights", "get", "official", "--quiet"]) == 0
    out = capsys.readouterr().out
    digests = {name: sha((folder / name).read_bytes()) for name in (SWAP_FILE, ARCFACE_FILE)}
    assert f"sha256 {sha(drive.state.payload)}" in out
    assert all(f"sha256 {d}  {name}" in out for name, d in digests.items())
    assert store_entries(home) == ["official"]
    assert list((home / "downloads").iterdir()) == []  # the archive is not kept
    assert json.loads(record_path().read_text()) == {"archive": sha(drive.state.payload), "files": digests}
    provenance = json.loads((home / "models/official/manifest.json").read_text())["provenance"]
    assert provenance["licence"].startswith("Apache-2.0") and provenance["converted_from"] == digests

    stored, direct = load_weights("official"), load_official(folder / SWAP_FILE, folder / ARCFACE_FILE)
    for a, b in zip(stored.iin.state_dict().values(), direct.iin.state_dict().values()):
        assert torch.equal(a, b)
    assert cli.main(["weights", "list"]) == 0
    assert "Apache-2.0" in capsys.readouterr().out

    asked = len(drive.state.requests)
    assert cli.main(["weights", "get", "official"]) == 0  # installed: nothing fetched
    assert "already installed" in capsys.readouterr().out and len(drive.state.requests) == asked


def test_corrupt_download_is_refused_and_nothing_is_left(home, drive, release, monkeypatch, capsys):
    data = release[0].read_bytes()
    drive.state.payload = data[: len(data) * 3 // 5]  # a file cut short on the server
    monkeypatch.setenv(URL_ENV, drive.url)
    assert cli.main(["weights", "get", "official", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "damaged or incomplete" in err
    assert store_entries(home) == [] and list((home / "downloads").iterdir()) == []
    assert not record_path().exists()


def test_changed_release_is_refused(home, drive, release, monkeypatch):
    record_path().parent.mkdir(parents=True)
    record_path().write_text(json.dumps({"archive": "0" * 64}))
    drive.state.payload = release[0].read_bytes()
    monkeypatch.setenv(URL_ENV, drive.url)
    with pytest.raises(CheckpointError, match="differs from the expected 0000.*recorded at the first fetch"):
        get_official(progress=False)
    assert store_entries(home) == []


def test_get_official_from_folder_then_archive_offline(home, release, monkeypatch, capsys):
    monkeypatch.setenv(URL_ENV, f"http://127.0.0.1:{closed_port()}/uc")  # any network use would fail
    archive, folder = release
    assert cli.main(["weights", "get", "official", "--from", str(folder.parent)]) == 0  # finds checkpoints/
    assert cli.main(["weights", "get", "official", "--from", str(archive), "--force"]) == 0
    out = capsys.readouterr().out
    assert out.count("installed the official weights") == 2 and f"sha256 {sha(archive.read_bytes())}" in out
    assert store_entries(home) == ["official"] and archive.exists()  # the user's file is kept


def test_wrong_files_are_refused_against_the_record(home, release, tmp_path):
    archive, folder = release
    record_path().parent.mkdir(parents=True)
    record_path().write_text(json.dumps({"files": {SWAP_FILE: "f" * 64}}))
    with pytest.raises(CheckpointError, match="not the official release"):
        get_official(folder, progress=False)
    assert store_entries(home) == []


# ---------------------------------------------------------------------------------- hostile archives


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _zip(path: Path, members: dict[str, bytes], links: dict[str, str] = {}) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in links.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def _tar(path: Path, members: dict[str, bytes], special: list[tarfile.TarInfo] = []) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in special:
            tf.addfile(info)
    return path


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


OK = {f"checkpoints/{SWAP_FILE}": b"x" * 100, f"checkpoints/{ARCFACE_FILE}": b"y" * 100}


def _hostile(kind: str, tmp: Path) -> Path:
    outside = str(tmp / "outside.txt")
    if kind == "zip traversal":
        return _zip(tmp / "a.zip", {**OK, "../../outside.txt": b"pwned"})
    if kind == "tar traversal":
        return _tar(tmp / "a.tgz", {**OK, "checkpoints/../../../outside.txt": b"pwned"})
    if kind == "absolute path":
        return _tar(tmp / "a.tgz", {**OK, outside: b"pwned"})
    if kind == "zip symlink":
        return _zip(tmp / "a.zip", {f"checkpoints/{SWAP_FILE}": b"x"}, {f"checkpoints/{ARCFACE_FILE}": outside})
    if kind == "tar symlink":
        return _tar(tmp / "a.tgz", OK, [_link("checkpoints/evil", outside, tarfile.SYMTYPE)])
    if kind == "tar hard link":
        return _tar(tmp / "a.tgz", OK, [_link("checkpoints/evil", outside, tarfile.LNKTYPE)])
    if kind == "zip bomb":
        return _zip(tmp / "a.zip", {f"checkpoints/{SWAP_FILE}": b"x", f"checkpoints/{ARCFACE_FILE}": bytes(20 << 20)})
    if kind == "oversized tar member":
        header = tarfile.TarInfo(f"checkpoints/{ARCFACE_FILE}")
        header.size = 8 << 30  # claims 8 GB, holds nothing
        path = tmp / "a.tar"
        path.write_bytes(header.tobuf(format=tarfile.GNU_FORMAT) + bytes(2048))
        return path
    if kind == "pickle running code":
        payload = pickle.dumps({"weight": _RunsCode(tmp / "pwned")}, protocol=2)
        return _zip(tmp / "a.zip", {f"checkpoints/{SWAP_FILE}": payload, f"checkpoints/{ARCFACE_FILE}": b"y"})
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, error, message", [
    ("zip traversal", ArchiveError, r"points outside the archive \('..'\)"),
    ("tar traversal", ArchiveError, r"points outside the archive"),
    ("absolute path", ArchiveError, r"absolute path"),
    ("zip symlink", ArchiveError, r"is a symbolic link"),
    ("tar symlink", ArchiveError, r"is a symbolic link"),
    ("tar hard link", ArchiveError, r"is a hard link"),
    ("zip bomb", ArchiveError, r"a zip bomb"),
    ("oversized tar member", ArchiveError, r"over the .*-byte limit"),
    ("pickle running code", UnsafeCheckpointError, r"refusing to load (posix|os)\.system"),
])
def test_hostile_archive_is_refused(home, tmp_path, kind, error, message):
    given = tmp_path / "given"
    given.mkdir()
    archive = _hostile(kind, given)
    with pytest.raises(error, match=message):
        get_official(archive, progress=False)
    assert [p.name for p in given.iterdir()] == [archive.name]  # nothing written beside it ...
    assert not list(tmp_path.rglob("outside.txt")) and not list(tmp_path.rglob("pwned"))
    assert store_entries(home) == []  # ... nor left in the store, temporaries included


def test_hostile_archive_through_the_cli_is_one_line(home, tmp_path, capsys):
    archive = _hostile("zip symlink", tmp_path)
    assert cli.main(["weights", "get", "official", "--from", str(archive)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mfs-fast: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_streamed_bytes_are_counted_not_just_declared(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"w.bin": os.urandom(3000)})
    with pytest.raises(ArchiveError, match="over the 2,000-byte limit"):
        extract(archive, tmp_path, ["w.bin"], Limits(max_file_bytes=2000))
    (tmp_path / "out").mkdir()
    assert extract(archive, tmp_path / "out", ["w.bin"]) == {"w.bin": tmp_path / "out" / "w.bin"}


@pytest.mark.parametrize("content, message", [
    (b"<!DOCTYPE html><html><body>Google Drive</body></html>", "an HTML page"),
    (b"Rar!\x1a\x07\x00", "RAR archive"),
    (b"", "is empty"),
    (b"PK\x03\x04truncated", "damaged or incomplete"),
])
def test_not_an_archive(tmp_path, content, message):
    (tmp_path / "file").write_bytes(content)
    with pytest.raises(ArchiveError, match=message):
        extract(tmp_path / "file", tmp_path, [SWAP_FILE])


def test_missing_member_names_what_is_there(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"weights/other.bin": b"x"})
    with pytest.raises(ArchiveError, match=f"holds no {SWAP_FILE}; it has: weights/other.bin"):
        extract(archive, tmp_path, [SWAP_FILE])
