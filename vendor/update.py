"""Vendor the browser code that the project's pages need, so they draw offline.

    .venv/bin/python vendor/update.py      (needs npm and the npm registry)

- vega, vega-lite and vega-embed, at the versions dvc-render's page loads
  from a CDN, inlined into vendor/plots-page.html: the page template that
  .dvc/config gives `dvc plots show` and `dvc plots diff`. Inline, so the
  written page works from any folder with no network.
- Swagger UI (swagger-ui-dist) for the service's /docs, copied to
  src/serving/static/swagger-ui/ (the serving image copies src/serving/).

Each package is the registry's tarball from `npm pack`, checked against the
registry's `dist.integrity`. vendor/vendored.json records that integrity and
the SHA-256 of every file taken, and tests/template/test_offline_pages.py
checks the committed files against it. Run this after a dvc-render upgrade
changes its script versions, or to move Swagger UI to another version.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from dvc_render.vega import VegaRenderer

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "vendor"
PAGE = VENDOR / "plots-page.html"
MANIFEST = VENDOR / "vendored.json"
LICENSES = VENDOR / "licenses"
SWAGGER_DIR = ROOT / "src" / "serving" / "static" / "swagger-ui"
# FastAPI's default /docs page loads swagger-ui-dist@5 (any 5.x) from a CDN; this pins one.
SWAGGER_UI = "swagger-ui-dist@5.35.0"
SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png",
                 "swagger-ui-bundle.js.LICENSE.txt", "LICENSE", "NOTICE")

# DVC's own page (dvc_render.html.PAGE_HTML) with its scripts inlined. DVC fills
# the refresh-tag and plot-divs placeholders; the template has no scripts
# placeholder, which keeps DVC from adding its CDN script tags. The charset
# matters: the bundles hold non-ASCII characters, and a page opened from disk
# has no HTTP header to say UTF-8.
PAGE_HEAD = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- vega, vega-lite and vega-embed, inlined by vendor/update.py (sources and hashes: vendor/vendored.json) -->
"""
PAGE_TAIL = """    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""
# The attribute names the package and file, so the bytes between the tags can be
# checked against vendored.json.
SCRIPT_OPEN = '<script data-vendored="{spec} {path}">'


def dvc_render_packages() -> list[str]:
    """name@version of each script dvc-render's page loads, in its order (vega first)."""
    return re.findall(r"/npm/([^\"/]+@[^\"/]+)\"", VegaRenderer.SCRIPTS)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npm(*args: str, cwd: Path) -> str:
    return subprocess.run(["npm", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def fetch(spec: str, folder: Path) -> tuple[dict, tarfile.TarFile]:
    """The package's tarball from the registry, checked against the registry's integrity."""
    packed = json.loads(npm("pack", spec, "--json", cwd=folder))[0]
    expected = json.loads(npm("view", spec, "dist", "--json", cwd=folder))
    data = (folder / packed["filename"]).read_bytes()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if integrity != expected["integrity"]:
        sys.exit(f"{spec}: tarball {integrity} is not the registry's {expected['integrity']}")
    record = {"package": f"{packed['name']}@{packed['version']}", "tarball": expected["tarball"],
              "integrity": integrity, "files": []}
    return record, tarfile.open(folder / packed["filename"])


def take(record: dict, archive: tarfile.TarFile, path: str, destination: str) -> bytes:
    data = archive.extractfile(f"package/{path}").read()
    record["files"].append({"path": path, "to": destination, "bytes": len(data), "sha256": sha256(data)})
    return data


def main() -> None:
    packages = []
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        scripts = []
        LICENSES.mkdir(parents=True, exist_ok=True)
        for spec in dvc_render_packages():
            record, archive = fetch(spec, folder)
            name = record["package"].rsplit("@", 1)[0]
            # The file the CDN serves for a bare `name@version` URL.
            bundle = json.loads(archive.extractfile("package/package.json").read())["jsdelivr"]
            code = take(record, archive, bundle, PAGE.relative_to(ROOT).as_posix())
            # Either would end the inline script early or change how the HTML parser reads it.
            if b"</script" in code.lower() or b"<!--" in code:
                sys.exit(f"{spec}: {bundle} cannot be inlined as it is")
            opening = SCRIPT_OPEN.format(spec=record["package"], path=bundle)
            scripts.append(f"    {opening}".encode() + code + b"</script>\n")
            license_file = LICENSES / f"{name}.LICENSE"
            license_file.write_bytes(take(record, archive, "LICENSE", license_file.relative_to(ROOT).as_posix()))
            packages.append(record)
            archive.close()
        # Bytes, not text: the inlined files stay byte for byte what the registry served.
        PAGE.write_bytes(PAGE_HEAD.encode() + b"".join(scripts) + PAGE_TAIL.encode())

        record, archive = fetch(SWAGGER_UI, folder)
        SWAGGER_DIR.mkdir(parents=True, exist_ok=True)
        for path in SWAGGER_FILES:
            target = SWAGGER_DIR / path
            target.write_bytes(take(record, archive, path, target.relative_to(ROOT).as_posix()))
        packages.append(record)
        archive.close()
    MANIFEST.write_text(json.dumps({"packages": packages}, indent=2) + "\n", encoding="utf-8")
    print(f"vendored {', '.join(record['package'] for record in packages)}")


if __name__ == "__main__":
    main()
