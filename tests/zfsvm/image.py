"""The cached guest image: built once by build-image.sh, keyed by a hash of the recipe.

Environment:
  ZFSVM_CACHE      where images are cached (default ~/.cache/zfs-reconcile/zfsvm);
                   each recipe hash gets its own folder, stale ones are removed after a build
  ZFSVM_IMAGE_DIR  use this prebuilt image folder as is (no hash check, no build)
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import attrs

HERE = Path(__file__).resolve().parent
RECIPE = HERE / "build-image.sh"


class ImageUnavailable(Exception):
    """The image cannot be built here; the message says why."""


@attrs.frozen
class Image:
    folder: Path

    @property
    def root(self) -> Path:
        return self.folder / "root.img"

    @property
    def kernel(self) -> Path:
        return self.folder / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.folder / "initrd.img"

    @property
    def key(self) -> Path:
        return self.folder / "id_ed25519"

    def info(self) -> str:
        return (self.folder / "ok").read_text().strip().replace("\n", ", ")


def recipe_hash() -> str:
    return hashlib.sha256(RECIPE.read_bytes()).hexdigest()[:16]


def cache_root() -> Path:
    default = Path.home() / ".cache" / "zfs-reconcile" / "zfsvm"
    return Path(os.environ.get("ZFSVM_CACHE", str(default)))


def missing_build_tools() -> list[str]:
    return [tool for tool in ("debootstrap", "mke2fs", "chroot") if shutil.which(tool) is None]


def ensure_image() -> Image:
    """Return the cached image for the current recipe, building it first if needed."""
    prebuilt = os.environ.get("ZFSVM_IMAGE_DIR")
    if prebuilt:
        image = Image(Path(prebuilt))
        if not (image.folder / "ok").exists():
            raise ImageUnavailable(f"ZFSVM_IMAGE_DIR={prebuilt} holds no finished image")
        return image
    root = cache_root()
    key = recipe_hash()
    image = Image(root / key)
    if (image.folder / "ok").exists():
        return image
    if os.geteuid() != 0:
        raise ImageUnavailable("building the test guest needs root (debootstrap, chroot, mount)")
    missing = missing_build_tools()
    if missing:
        raise ImageUnavailable(f"building the test guest needs {', '.join(missing)} (apt install)")
    root.mkdir(parents=True, exist_ok=True)
    with (root / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be building it right now
        if (image.folder / "ok").exists():
            return image
        if image.folder.exists():
            shutil.rmtree(image.folder)
        started = time.monotonic()
        print(f"zfsvm: building guest image {key} (about 5 minutes)...", file=sys.stderr)
        proc = subprocess.run(["bash", str(RECIPE), str(image.folder)], check=False)
        if proc.returncode != 0 or not (image.folder / "ok").exists():
            raise ImageUnavailable(f"guest image build failed (exit code {proc.returncode})")
        print(
            f"zfsvm: image built in {time.monotonic() - started:.0f} s: {image.info()}",
            file=sys.stderr,
        )
    for stale in root.iterdir():
        if stale.is_dir() and stale.name != key:
            shutil.rmtree(stale, ignore_errors=True)
    return image


if __name__ == "__main__":
    # `python3 tests/zfsvm/image.py` builds (or finds) the image and prints its folder.
    print(ensure_image().folder)
