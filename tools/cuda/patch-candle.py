#!/usr/bin/env python3
"""Writes patched copies of candle-core and candle-kernels for a CUDA build that starts anywhere.

candle 0.11 binds CUDA at link time: candle-core asks cudarc for `dynamic-linking`, so a binary
built with `--features cuda` names libcuda.so.1, libcublas, libnvrtc and libcurand as needed
libraries and does not start where they are missing, not even for `--help`. candle-kernels'
build script also compiles a MoE/GGUF static library that we never call (16 of the 27 minutes of
a cold build on two cores) and links libcudart for it alone.

The copies change exactly that (the rest is the published crate, byte for byte):
  candle-core/Cargo.toml   cudarc feature `dynamic-linking` -> `dynamic-loading` (dlopen on first
                           use; cudarc's own default)
  candle-kernels/build.rs  no MoE/GGUF library, no libcudart link line; the PTX kernels candle's
                           ops use are built as before

A link succeeds only if nothing we link calls the MoE launchers (the linker drops the unused
functions that reference them), so a finished build is the proof that they are not needed.
The same change is under discussion upstream (huggingface/candle issue 3900, open).

usage: patch-candle.py OUT_DIR   prints the two crate folders, one per line
"""

import json
import pathlib
import shutil
import subprocess
import sys

CRATES = ("candle-core", "candle-kernels")


def registry_sources(root: pathlib.Path) -> dict:
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    )
    found = {}
    for pkg in json.loads(meta.stdout)["packages"]:
        if pkg["name"] in CRATES and (pkg.get("source") or "").startswith("registry+"):
            found[pkg["name"]] = (pkg["version"], pathlib.Path(pkg["manifest_path"]).parent)
    missing = set(CRATES) - set(found)
    if missing:
        sys.exit(f"patch-candle: Cargo.lock has no registry copy of {sorted(missing)}")
    return found


def replace_once(path: pathlib.Path, old: str, new: str) -> None:
    text = path.read_text()
    if text.count(old) != 1:
        sys.exit(f"patch-candle: {path} does not contain {old!r} exactly once; candle changed")
    path.write_text(text.replace(old, new))


def strip_moe(build_rs: pathlib.Path) -> None:
    """Cuts the MoE library build and its link lines, from its source list to the final Ok(())."""
    text = build_rs.read_text()
    start = text.find("    let mut moe_sources = vec![")
    end = text.find("    Ok(())\n}", start)
    if start < 0 or end < 0 or "rustc-link-lib=dylib=cudart" not in text[start:end]:
        sys.exit(f"patch-candle: {build_rs} no longer has the MoE section this script cuts")
    note = "    // MoE/GGUF library and libcudart link removed by tools/cuda/patch-candle.py.\n"
    build_rs.write_text(text[:start] + note + text[end:])


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = pathlib.Path(sys.argv[1]).resolve()
    root = pathlib.Path(__file__).resolve().parents[2]
    for name, (version, src) in registry_sources(root).items():
        dst = out / f"{name}-{version}"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
        if name == "candle-core":
            replace_once(dst / "Cargo.toml", '    "dynamic-linking",\n', '    "dynamic-loading",\n')
        else:
            strip_moe(dst / "build.rs")
        print(dst)


if __name__ == "__main__":
    main()
