"""How the image test names what differs between two builds: layers of OCI layouts compared file by file."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from src.tools import image


def layout(folder: Path, layers: list[dict[str, tuple[bytes, int]]]) -> Path:
    """An OCI image layout whose layers hold {path: (content, mtime)}."""
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(payload: bytes) -> str:
        digest = hashlib.sha256(payload).hexdigest()
        (blobs / digest).write_bytes(payload)
        return f"sha256:{digest}"

    digests = []
    for files in layers:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for name, (content, mtime) in sorted(files.items()):
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(content), mtime
                archive.addfile(info, io.BytesIO(content))
        digests.append(blob(buffer.getvalue()))
    manifest = blob(json.dumps({"layers": [{"digest": d} for d in digests]}).encode())
    (folder / "index.json").write_text(json.dumps({"manifests": [{"digest": manifest}]}))
    return folder


def test_differing_files_names_each_changed_added_or_dated_file_by_layer(tmp_path):
    base = {"etc/os-release": (b"bookworm", 0)}
    first = layout(tmp_path / "a", [base, {"app/x.py": (b"x = 1", 10), "app/y.py": (b"y", 10)}])
    second = layout(tmp_path / "b", [base, {"app/x.py": (b"x = 2", 10), "app/y.py": (b"y", 11), "app/z.py": (b"", 10)}])
    assert image.differing_files(first, second) == ["layer 1: app/x.py", "layer 1: app/y.py", "layer 1: app/z.py"]
    assert (
        image.differing_files(
            first, layout(tmp_path / "c", [base, {"app/x.py": (b"x = 1", 10), "app/y.py": (b"y", 10)}])
        )
        == []
    )
    assert image.differing_files(first, layout(tmp_path / "d", [base])) == ["<2 layers against 1>"]
