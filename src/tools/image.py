"""The serving image, built offline and reproducibly: `make image`.

    python -m src.tools.image wheels         # build/wheels/: the serving lock's wheels, hash-checked
    python -m src.tools.image base           # the local base image (built once per machine, cached)
    python -m src.tools.image build [--tag T] [--base B]   # both, then the image; prints its digest and size

The steps, and why each is there:
- **Wheelhouse.** `pip download --require-hashes` of requirements-serving.lock
  into build/wheels/ on the host; the Dockerfile installs from it with
  `--no-index --require-hashes`, so no build step needs the network and every
  file is the lock's.
- **Base.** Without a registry, `python:3.11.7-slim-bookworm` cannot be pulled.
  The local equivalent: a Debian bookworm minbase (debootstrap) with the
  Python that runs this module copied into /usr/local, as the official image
  lays it out, so the image runs exactly the manifest's Python version (the
  service refuses the model on another). Cached as a tarball under
  ~/.cache/model-service/ (IMAGE_CACHE_ENV), keyed by what it is made of.
- **Build.** podman with the vfs storage driver and chroot isolation (what a
  sandbox without overlayfs or user namespaces allows), one layer over the
  base (--layers=false), its file times and the image's creation time set to
  the commit's time (--timestamp), so two builds of one commit give one digest.
- **Run.** `buildah run --isolation chroot` (podman run needs a runtime that
  can set rlimits, which such a sandbox refuses).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from src.pipeline import config

ROOT = config.ROOT
DOCKERFILE = ROOT / "Dockerfile"
SERVING_LOCK = ROOT / "requirements-serving.lock"
WHEELS = ROOT / "build" / "wheels"
TAG = "localhost/model-service"
BASE_TAG = "localhost/model-service-base"
IMAGE_CACHE_ENV = "IMAGE_CACHE"
STORAGE = ["--storage-driver", "vfs"]
SUITE = "bookworm"
# What the copied interpreter's C extensions link to (ldd of lib-dynload),
# beyond minbase, and the CA list for TLS clients in the service.
BASE_PACKAGES = (
    "ca-certificates",
    "libssl3",
    "libffi8",
    "libsqlite3-0",
    "libuuid1",
    "libncursesw6",
    "libreadline8",
    "libexpat1",
    "libbz2-1.0",
    "liblzma5",
    "zlib1g",
    "libnsl2",
    "libtirpc3",
)
# Not copied from the interpreter's prefix: its installed packages (the image
# installs its own), the standard library's tests and GUI modules.
STDLIB_SKIP = ("site-packages", "test", "idlelib", "tkinter", "turtledemo", "lib2to3/tests")
# Tools the build needs; `.ci/run` installs them (apt package, command).
TOOLS = {"podman": "podman", "buildah": "buildah", "debootstrap": "debootstrap"}


class ImageError(RuntimeError):
    """A step of the image build failed; the message names it."""


def missing_tools() -> list[str]:
    """The apt packages whose commands are not on PATH."""
    return [
        package
        for package, command in TOOLS.items()
        if shutil.which(command) is None and shutil.which(command, path="/usr/sbin:/sbin") is None
    ]


def cache_dir() -> Path:
    return Path(os.environ.get(IMAGE_CACHE_ENV) or Path.home() / ".cache" / "model-service")


def commit_time(root: Path = ROOT) -> int:
    """The HEAD commit's time: the image's timestamp (SOURCE_DATE_EPOCH)."""
    out = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=root, capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        raise ImageError(f"cannot read the commit time of {root}: {out.stderr.strip() or 'no commits'}")
    return int(out.stdout.strip())


def _sbin(command: str) -> str:
    """A system command by path: a venv's PATH may lack /usr/sbin (chroot, debootstrap)."""
    found = shutil.which(command) or shutil.which(command, path="/usr/local/sbin:/usr/sbin:/sbin")
    if found is None:
        raise ImageError(f"{command} not found: apt-get install {command if command != 'chroot' else 'coreutils'}")
    return found


def _run(args: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise ImageError(f"{what} failed (exit {result.returncode}): {' '.join(args[:6])} ...\n{tail}")
    return result


@contextmanager
def timed(timings: dict[str, float], step: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[step] = round(time.perf_counter() - start, 1)


# --- wheelhouse ---------------------------------------------------------------


def wheels(lock: Path = SERVING_LOCK, target: Path = WHEELS) -> list[Path]:
    """The lock's wheels in `target` (emptied first, so no stale wheel enters the build context).

    Downloaded once per lock into the cache (keyed by the lock's SHA-256), then
    copied: the install in the image checks every wheel's hash against the lock again.
    """
    cached = cache_dir() / f"wheels-{hashlib.sha256(lock.read_bytes()).hexdigest()[:16]}"
    if not cached.is_dir():
        partial = cached.with_name(cached.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--require-hashes",
                "--only-binary=:all:",
                "--no-deps",
                "--dest",
                str(partial),
                "-r",
                str(lock),
            ],
            "pip download of the serving lock",
        )
        partial.rename(cached)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(cached, target)
    found = sorted(target.glob("*.whl"))
    if not found:
        raise ImageError(f"pip download put no wheel in {target}")
    return found


# --- base ---------------------------------------------------------------------


def python_prefix() -> Path:
    """The prefix of the interpreter running this (a venv's base), which trained the model."""
    return Path(sys.base_prefix)


def base_key() -> str:
    """What the base is made of: suite, packages, and the interpreter's version and files."""
    prefix = python_prefix()
    version = sysconfig.get_python_version()
    binary = prefix / "bin" / f"python{version}"
    parts = [SUITE, *BASE_PACKAGES, sys.version, hashlib.sha256(binary.read_bytes()).hexdigest()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _copy_python(rootfs: Path) -> None:
    """The interpreter, its shared library and standard library into rootfs/usr/local."""
    prefix, version = python_prefix(), sysconfig.get_python_version()
    local = rootfs / "usr" / "local"
    (local / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(prefix / "bin" / f"python{version}", local / "bin" / f"python{version}")
    for name in ("python3", "python"):
        (local / "bin" / name).symlink_to(f"python{version}")
    for library in (prefix / "lib").glob(f"libpython{version}*.so*"):
        shutil.copy2(library, local / "lib" / library.name, follow_symlinks=False)
    stdlib = prefix / "lib" / f"python{version}"
    skip = {stdlib / part for part in STDLIB_SKIP}

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [name for name in names if Path(folder) / name in skip or name.startswith("_tkinter")]

    shutil.copytree(stdlib, local / "lib" / f"python{version}", symlinks=True, ignore=ignore)
    (local / "lib" / f"python{version}" / "site-packages").mkdir()


def build_base(tarball: Path) -> None:
    """debootstrap a bookworm minbase, add the Python, and tar it (sorted, numeric owners)."""
    with tempfile.TemporaryDirectory(prefix="model-service-base-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        _run(
            [
                _sbin("debootstrap"),
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                SUITE,
                str(rootfs),
                "http://deb.debian.org/debian",
            ],
            "debootstrap of the base",
        )
        _copy_python(rootfs)
        _run([_sbin("chroot"), str(rootfs), "/sbin/ldconfig"], "ldconfig in the base")
        # pip for the install stage, from the standard library's bundled wheel (offline).
        _run(
            [_sbin("chroot"), str(rootfs), "/usr/local/bin/python3", "-m", "ensurepip", "--default-pip"],
            "ensurepip in the base",
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root"},
        )
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log", "tmp"):
            for path in (rootfs / junk).glob("*"):
                if path.is_file() or path.is_symlink():
                    path.unlink()
                elif path.is_dir():
                    shutil.rmtree(path)
        check = _run(
            [
                _sbin("chroot"),
                str(rootfs),
                "/usr/local/bin/python3",
                "-c",
                "import platform, ssl, sqlite3, ctypes, lzma, bz2; print(platform.python_version())",
            ],
            "the base's Python",
        )
        if check.stdout.strip() != sys.version.split()[0]:
            raise ImageError(f"the base's Python is {check.stdout.strip()}, not {sys.version.split()[0]}")
        tarball.parent.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial")
        with tarfile.open(partial, "w") as archive:

            def add(path: Path) -> None:
                archive.add(path, arcname=str(path.relative_to(rootfs)) or ".", recursive=False)
                if path.is_dir() and not path.is_symlink():
                    for child in sorted(path.iterdir()):
                        add(child)

            add(rootfs)
        partial.replace(tarball)


def image_exists(reference: str) -> bool:
    return subprocess.run(["podman", *STORAGE, "image", "exists", reference], capture_output=True).returncode == 0


def base(timings: dict[str, float] | None = None) -> str:
    """The local base image's reference: imported from the cached tarball, built first when absent."""
    timings = {} if timings is None else timings
    key = base_key()
    reference = f"{BASE_TAG}:{key}"
    if image_exists(reference):
        return reference
    tarball = cache_dir() / f"base-{SUITE}-{key}.tar"
    if not tarball.exists():
        with timed(timings, "base: debootstrap"):
            build_base(tarball)
    with timed(timings, "base: podman import"):
        _run(
            [
                "podman",
                *STORAGE,
                "import",
                "--change",
                'CMD ["python3"]',
                "--change",
                "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                str(tarball),
                reference,
            ],
            "podman import of the base",
        )
    return reference


# --- build ----------------------------------------------------------------------


def build(
    tag: str = TAG,
    base_image: str | None = None,
    timestamp: int | None = None,
    timings: dict[str, float] | None = None,
    no_cache: bool = False,
    root: Path = ROOT,
) -> str:
    """Build the Dockerfile of the checkout `root`; return the image's ID (the sha256 digest of its config)."""
    timings = {} if timings is None else timings
    if not (root / "models" / "model.pkl").exists():
        raise ImageError("models/model.pkl is missing: run `dvc repro` (or `dvc pull`) before building the image")
    with timed(timings, "wheelhouse"):
        wheels(root / SERVING_LOCK.name, root / WHEELS.relative_to(ROOT))
    reference = base_image or base(timings)
    stamp = commit_time(root) if timestamp is None else timestamp
    # The tag's previous image (and its containers) go first: with vfs every image is a full copy on disk.
    subprocess.run(["podman", *STORAGE, "rmi", "--force", tag], capture_output=True)
    # --layers=false: one container per stage and one commit, so the image is
    # the base plus one layer (with vfs every committed step copies the whole
    # file tree: 14 min for the per-step layers against a few for one).
    with timed(timings, "podman build"):
        _run(
            [
                "podman",
                *STORAGE,
                "build",
                "--isolation",
                "chroot",
                "--pull=never",
                "--layers=false",
                "--timestamp",
                str(stamp),
                "--build-arg",
                f"BASE={reference}",
                "--build-arg",
                f"SOURCE_DATE_EPOCH={stamp}",
                *(["--no-cache"] if no_cache else []),
                "--format",
                "oci",
                "-t",
                tag,
                "-f",
                str(root / DOCKERFILE.name),
                str(root),
            ],
            "podman build",
            cwd=root,
        )
    return image_id(tag)


def image_id(reference: str) -> str:
    out = _run(["podman", *STORAGE, "image", "inspect", "--format", "{{.Id}}", reference], "podman image inspect")
    return "sha256:" + out.stdout.strip().removeprefix("sha256:")


def image_size(reference: str) -> int:
    out = _run(["podman", *STORAGE, "image", "inspect", "--format", "{{.Size}}", reference], "podman image inspect")
    return int(out.stdout.strip())


def layers(reference: str) -> list[str]:
    """The image's layer digests (diff IDs), base first."""
    out = _run(
        ["podman", *STORAGE, "image", "inspect", "--format", "{{json .RootFS.Layers}}", reference],
        "podman image inspect",
    )
    return json.loads(out.stdout)


def save(reference: str, folder: Path) -> Path:
    """The image as an OCI layout directory (uncompressed layers), to compare builds file by file."""
    _run(
        ["podman", *STORAGE, "save", "--format", "oci-dir", "--uncompressed", "-o", str(folder), reference],
        "podman save",
    )
    return folder


def layer_files(layout: Path) -> dict[str, dict[str, str]]:
    """Per layer diff ID: each member's path -> a digest of its header fields and content."""
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest).read_text())
    found: dict[str, dict[str, str]] = {}
    for layer in manifest["layers"]:
        blob = layout / "blobs" / "sha256" / layer["digest"].split(":")[1]
        members: dict[str, str] = {}
        with tarfile.open(blob) as archive:
            for member in archive:
                digest = hashlib.sha256(
                    repr(
                        (member.mode, member.uid, member.gid, member.mtime, member.type, member.linkname, member.size)
                    ).encode()
                )
                if member.isfile():
                    digest.update(archive.extractfile(member).read())
                members[member.name] = digest.hexdigest()
        found[layer["digest"]] = members
    return found


def differing_files(first: Path, second: Path) -> list[str]:
    """Files that differ between the same-position layers of two saved images."""
    a, b = list(layer_files(first).values()), list(layer_files(second).values())
    if len(a) != len(b):
        return [f"<{len(a)} layers against {len(b)}>"]
    differ = []
    for position, (one, other) in enumerate(zip(a, b, strict=True)):
        for name in sorted(set(one) | set(other)):
            if one.get(name) != other.get(name):
                differ.append(f"layer {position}: {name}")
    return differ


# --- run ------------------------------------------------------------------------


def container(reference: str) -> str:
    """A working container of the image (buildah), for `buildah run`."""
    return _run(["buildah", *STORAGE, "from", "--pull-never", reference], "buildah from").stdout.strip()


def run_command(name: str, command: list[str], user: str | None = None) -> list[str]:
    """The argv that runs `command` in the container `name`, with the image's user unless `user`."""
    return [
        "buildah",
        *STORAGE,
        "run",
        "--isolation",
        "chroot",
        *(["--user", user] if user else []),
        name,
        "--",
        *command,
    ]


def remove(name: str) -> None:
    subprocess.run(["buildah", *STORAGE, "rm", name], capture_output=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.tools.image", description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("wheels", "base", "build"))
    parser.add_argument("--tag", default=TAG)
    parser.add_argument(
        "--base",
        help="a base image reference instead of the local Debian one "
        "(e.g. python:3.11.7-slim-bookworm where a registry is reachable)",
    )
    parser.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    args = parser.parse_args(argv)
    missing = missing_tools()
    if args.step != "wheels" and missing:
        sys.exit(f"image: {', '.join(missing)} not installed: apt-get install {' '.join(missing)} (.ci/run does)")
    timings: dict[str, float] = {}
    try:
        if args.step == "wheels":
            with timed(timings, "wheelhouse: pip download"):
                found = wheels()
            print(f"image: {len(found)} wheels in {WHEELS.relative_to(ROOT)}")
        elif args.step == "base":
            print(f"image: base {base(timings)}")
        else:
            digest = build(args.tag, args.base, timings=timings, no_cache=args.no_cache)
            print(f"image: {args.tag} {digest} ({image_size(args.tag) / 1e6:.0f} MB)")
            print(
                f"image: run it with `buildah {' '.join(STORAGE)} from {args.tag}` then "
                f"`buildah {' '.join(STORAGE)} run --isolation chroot <container> -- python -m src.serving.serve`,"
                f" or `podman run -p 8000:8000 {args.tag}` where podman can run containers"
            )
    except ImageError as error:
        sys.exit(f"image: {error}")
    for step, seconds in timings.items():
        print(f"image: {step}: {seconds} s")


if __name__ == "__main__":
    main()
