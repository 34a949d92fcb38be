"""Which malloc a CPU training process runs with: tcmalloc or jemalloc preloaded, or glibc's.

On CPU, glibc's malloc returns large blocks to the kernel and faults them back in at every
step; bf16 autocast and the per-step activations allocate exactly such blocks. tcmalloc and
jemalloc keep them: the same fine-tune ran up to 1.5x faster with either preloaded on a 2-core
Xeon (docs/performance.md; PyTorch's own CPU launcher, `torch.backends.xeon.run_cpu`, preloads them
for the same reason). A preload must be in the environment before the process starts, so
`ftgen launch` sets LD_PRELOAD for the process it execs (config `resources.finetune.cpu_allocator`).
"""

from __future__ import annotations

import ctypes.util
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path

SETTINGS = ("auto", "system", "tcmalloc", "jemalloc")
# library file names, preferred first: tcmalloc_minimal has no profiler hooks (Debian
# libtcmalloc-minimal4, conda-forge gperftools); Debian libjemalloc2, conda-forge jemalloc
LIBRARIES = {
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so", "libtcmalloc.so"),
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so"),
}
# ctypes.util.find_library names (the ldconfig cache), for libraries outside the folders below
LINK_NAMES = {"tcmalloc": ("tcmalloc_minimal", "tcmalloc"), "jemalloc": ("jemalloc",)}
INSTALL_HINT = "Debian/Ubuntu: apt install libtcmalloc-minimal4 (or libjemalloc2); conda: gperftools or jemalloc"


def search_dirs(env: Mapping[str, str]) -> list[Path]:
    """This Python's and the active conda env's lib folders, LD_LIBRARY_PATH, the system's."""
    dirs = [Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib"]
    if env.get("CONDA_PREFIX"):
        dirs.append(Path(env["CONDA_PREFIX"]) / "lib")
    dirs += [Path(p) for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
    arch = sysconfig.get_config_var("MULTIARCH") or ""
    for root in ("/usr/local/lib", "/usr/lib", "/lib"):
        dirs += [Path(root) / arch] if arch else []
        dirs.append(Path(root))
    dirs.append(Path("/usr/lib64"))
    return list(dict.fromkeys(dirs))


def find_library(name: str, env: Mapping[str, str], dirs: list[Path] | None = None) -> str | None:
    """Path of the `name` allocator's shared library (or its soname from the ldconfig cache)."""
    for folder in search_dirs(env) if dirs is None else dirs:
        for filename in LIBRARIES[name]:
            if (folder / filename).is_file():
                return str(folder / filename)
    if dirs is None:
        for link_name in LINK_NAMES[name]:
            if found := ctypes.util.find_library(link_name):
                return found
    return None


def preloaded(env: Mapping[str, str]) -> str | None:
    """The allocator an LD_PRELOAD already names (the user's choice stands)."""
    for entry in env.get("LD_PRELOAD", "").replace(" ", ":").split(":"):
        for name in LIBRARIES:
            if name in Path(entry).name:
                return name
    return None


def allocator_env(
    setting: str, gpus: int, env: Mapping[str, str], dirs: list[Path] | None = None, field: str = "cpu_allocator"
) -> tuple[dict[str, str], str]:
    """(the environment to exec the step with, what was decided, for the job's log).

    `auto`: on CPU-only jobs (no GPU visible), tcmalloc, else jemalloc, where one is installed;
    GPU jobs keep the system malloc (their hot loop is on the device). `tcmalloc`/`jemalloc`:
    that one, on any job, or an error naming `field`. `system`: no preload. An allocator already
    in LD_PRELOAD is kept in every case.
    """
    if setting not in SETTINGS:
        raise ValueError(f"{field}: {setting!r} is not one of {', '.join(SETTINGS)}")
    env = dict(env)
    if already := preloaded(env):
        return env, f"{already} (already in LD_PRELOAD)"
    if setting == "system" or (setting == "auto" and gpus > 0):
        return env, "system malloc" + (" (GPU job)" if setting == "auto" else "")
    if not sys.platform.startswith("linux"):
        if setting == "auto":
            return env, f"system malloc (no LD_PRELOAD on {sys.platform})"
        raise ValueError(f"{field}: {setting} needs LD_PRELOAD (Linux); this is {sys.platform}")
    for name in ("tcmalloc", "jemalloc") if setting == "auto" else (setting,):
        if path := find_library(name, env, dirs):
            env["LD_PRELOAD"] = ":".join(p for p in (path, env.get("LD_PRELOAD", "")) if p)
            return env, f"{name} ({path})"
    if setting == "auto":
        return env, f"system malloc (no tcmalloc or jemalloc found; {INSTALL_HINT})"
    where = ", ".join(map(str, search_dirs(env) if dirs is None else dirs))
    raise ValueError(f"{field}: {setting}: no {' / '.join(LIBRARIES[setting])} in {where}; {INSTALL_HINT}")


def loaded_allocator() -> str:
    """The malloc this process runs with, read from its own memory map (Linux), not assumed."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    for name in LIBRARIES:
        if f"lib{name}" in maps:
            return name
    return "system"
