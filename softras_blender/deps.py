"""The engine's Python dependencies inside Blender: status, a private install folder and a pip installer.

Blender's bundled Python has numpy but neither PyTorch nor Pillow. The add-on does not ship them (a PyTorch wheel
is hundreds of MB per platform); instead the preferences offer an Install button that runs pip in a subprocess:

    <blender python> -m pip install --target <extension user dir>/site-packages \
        --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple \
        torch==2.13.0 Pillow==13.0.0

(the CPU index keeps the download small, :data:`CPU_DOWNLOAD`; ``torch==2.13.0`` also matches ``2.13.0+cpu``, which
pip prefers). Where :func:`nvidia_driver` finds an NVIDIA driver, the CUDA build can be chosen instead: the same
command with :data:`TORCH_CUDA_INDEX_URL` (``2.13.0+cu130``, with NVIDIA's CUDA libraries as wheels,
:data:`CUDA_DOWNLOAD`). The folder is the extension's user directory (``bpy.utils.extension_path_user``), which
survives extension upgrades. :func:`activate` appends it to ``sys.path`` (appended, so Blender's own numpy keeps
priority) when it exists; :func:`deactivate` removes it again. Nothing is installed or imported at add-on import
time.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import queue
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass

import bpy

__all__ = [
    "REQUIREMENTS", "TORCH_INDEX_URL", "TORCH_CUDA_INDEX_URL", "CPU_DOWNLOAD", "CUDA_DOWNLOAD", "nvidia_driver",
    "missing", "refresh", "target_dir", "activate", "deactivate", "pip_command",
    "Installer", "InstallState", "STATE",
]

REQUIREMENTS = ("torch==2.13.0", "Pillow==13.0.0")
"""Pinned distributions pip installs (the engine's versions, see requirements.txt)."""
TORCH_INDEX_URL = "https://download.pytorch.org/whl/cpu"
"""Wheel index of PyTorch's CPU builds."""
# The CUDA build must exist for the pinned torch on Linux and Windows: after changing either, check that
# https://download.pytorch.org/whl/cu130/torch/ lists torch-2.13.0+cu130 wheels for cp311 (Blender 4.2-4.5's Python)
# on manylinux x86_64 and win_amd64, or run
# `pip download --no-deps -d /tmp/torch-cuda --index-url https://download.pytorch.org/whl/cu130 torch==2.13.0`;
# PyTorch's "previous versions" page lists the CUDA variants of each release.
TORCH_CUDA_INDEX_URL = "https://download.pytorch.org/whl/cu130"
"""Wheel index of PyTorch's CUDA 13.0 builds (needs an NVIDIA driver that supports CUDA 13.0)."""
CPU_DOWNLOAD = "about 200 MB"
"""Download size of the install with the CPU build of PyTorch, as told to users."""
CUDA_DOWNLOAD = "about 3 GB"
"""Download size of the install with the CUDA build (PyTorch and NVIDIA's CUDA libraries), as told to users."""
_LINUX_DRIVER_FILE = "/proc/driver/nvidia/version"  # present while the NVIDIA kernel module is loaded
_MODULES = {"torch": "PyTorch", "PIL": "Pillow", "numpy": "numpy"}  # import name -> distribution shown to users

_missing: list[str] | None = None
_activated: str | None = None


@functools.cache
def nvidia_driver() -> bool:
    """Whether an NVIDIA GPU driver is installed, so that the CUDA build of PyTorch is worth offering. Judged from
    files only, without importing torch or running anything: on Linux the driver's ``/proc/driver/nvidia/version`` or
    ``nvidia-smi`` on PATH; on Windows ``nvidia-smi`` on PATH or in System32 (where the driver puts it); never on
    macOS or other systems (no CUDA builds of PyTorch there). Cached for the session."""
    if sys.platform.startswith("linux"):
        return os.path.exists(_LINUX_DRIVER_FILE) or shutil.which("nvidia-smi") is not None
    if sys.platform == "win32":
        system32 = os.path.join(os.environ.get("SystemRoot", r"C:\Windows"), "System32", "nvidia-smi.exe")
        return shutil.which("nvidia-smi") is not None or os.path.isfile(system32)
    return False


def missing() -> list[str]:
    """Names of the engine's dependencies that Blender's Python cannot import (found without importing them;
    cached until :func:`refresh`)."""
    global _missing
    if _missing is None:
        _missing = [name for module, name in _MODULES.items() if importlib.util.find_spec(module) is None]
    return list(_missing)


def refresh() -> None:
    """Forget the cached :func:`missing` answer and the import system's directory caches."""
    global _missing
    _missing = None
    importlib.invalidate_caches()


def target_dir(create: bool = False) -> str:
    """The private site-packages folder: ``<extension user dir>/site-packages`` when installed as an extension,
    else ``<Blender user datafiles>/softras/site-packages`` (add-on run from a checkout). '' if it cannot be made."""
    package = __package__ or ""
    if package.startswith("bl_ext."):
        return bpy.utils.extension_path_user(package, path="site-packages", create=create)
    return bpy.utils.user_resource("DATAFILES", path=os.path.join("softras", "site-packages"), create=create)


def activate() -> None:
    """Append the private site-packages folder to ``sys.path`` if it exists (idempotent)."""
    global _activated
    path = target_dir()
    if _activated is None and path and os.path.isdir(path) and path not in sys.path:
        sys.path.append(path)
        _activated = path
        refresh()


def deactivate() -> None:
    """Undo :func:`activate`."""
    global _activated
    if _activated is not None and _activated in sys.path:
        sys.path.remove(_activated)
    _activated = None
    refresh()


def pip_command(target: str, cuda: bool = False) -> list[str]:
    """The pip command line that installs :data:`REQUIREMENTS` into ``target`` with Blender's Python: PyTorch's CPU
    build, or its CUDA build when ``cuda`` (from :data:`TORCH_CUDA_INDEX_URL`; other packages from PyPI)."""
    index = TORCH_CUDA_INDEX_URL if cuda else TORCH_INDEX_URL
    return [
        sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        "--upgrade", "--target", target, "--index-url", index, "--extra-index-url", "https://pypi.org/simple",
        *REQUIREMENTS,
    ]


@dataclass
class InstallState:
    """What the preferences show about an install: running, progress in [0, 1], last message, error flag."""

    running: bool = False
    progress: float = 0.0
    text: str = ""
    failed: bool = False


STATE = InstallState()
"""The one install state of this session (module-level: not saved in preferences or files)."""

# pip output line prefixes -> rough progress of an install
_STAGES = (("Looking in indexes", 0.02), ("Collecting", 0.1), ("Downloading", 0.3), ("Installing collected", 0.8),
           ("Successfully installed", 1.0))


class Installer:
    """Runs one command (normally :func:`pip_command`) in a subprocess; a reader thread queues its output lines.

    Call :meth:`poll` from the main thread (a timer) to update :data:`STATE`; it returns the exit code once the
    process has ended and every line has been read, else None.
    """

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._process: subprocess.Popen[str] | None = None
        self._log: list[str] = []
        self._cancelled = False

    def start(self) -> None:
        env = dict(os.environ, PYTHONNOUSERSITE="1", PIP_NO_COLOR="1")
        self._process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
            bufsize=1, env=env,
        )
        STATE.running, STATE.progress, STATE.text, STATE.failed = True, 0.0, "Starting pip", False
        threading.Thread(target=self._read, name="softras-pip-reader", daemon=True).start()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line.rstrip())
        self._lines.put(None)

    def poll(self) -> int | None:
        """Consume queued output into :data:`STATE`; the exit code when finished, else None."""
        assert self._process is not None
        finished = False
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                finished = True
                break
            if line.strip():
                self._log.append(line)
                STATE.text = line.strip()[:200]
                STATE.progress = max([STATE.progress] + [p for prefix, p in _STAGES if line.lstrip().startswith(prefix)])
        if not finished:
            return None
        code = self._process.wait()
        STATE.running = False
        if self._cancelled:
            STATE.failed, STATE.text = True, "Install cancelled"
        elif code == 0:
            refresh()
            activate()
            still = missing()
            STATE.failed = bool(still)
            STATE.progress = 1.0
            STATE.text = f"Installed, but still missing: {', '.join(still)}" if still else "Dependencies installed"
        else:
            STATE.failed = True
            errors = [s for s in self._log if "error" in s.lower()] or self._log[-1:] or [f"exit code {code}"]
            STATE.text = f"pip failed: {errors[-1].strip()[:200]}"
        return code

    def cancel(self) -> None:
        """Terminate the subprocess; :meth:`poll` then reports the install as cancelled."""
        self._cancelled = True
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
        STATE.text = "Cancelling"

