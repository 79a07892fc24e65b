"""``softras bench``: forward + backward time and peak memory of the soft rasterizer against a dense reference.

Each case renders a mesh with the sparse rasterizer and, where it fits in the memory budget, with the dense
reference (:mod:`softras.bench.dense_reference`) in the same run, and reports the median time and peak memory of both.
Times are wall-clock medians of forward + backward of ``sum(image * weights)``; memory is the peak resident-set
growth during one forward + backward on CPU (Linux ``VmHWM``, reset per measurement) or the peak allocated CUDA
memory. ``sigma`` is scaled with the pixel area (3e-5 at 64x64) so the blur stays the same number of pixels.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from softras.bench.dense_reference import dense_render
from softras.camera import Camera
from softras.mesh import icosphere
from softras.raster import RasterSettings, render_rgba, render_silhouette

__all__ = ["BenchCase", "BenchResult", "default_cases", "run_case", "measure_peaks", "run", "format_table"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
DENSE_BYTES_PER_PAIR = 240  # measured peak of dense_render forward + backward per (pixel, face) pair, float32


@dataclass(frozen=True)
class BenchCase:
    name: str
    level: int  # icosphere level of the (bumped) mesh
    size: int
    batch: int
    mode: str  # "silhouette" or "rgba"

    @property
    def faces(self) -> int:
        return 20 * 4**self.level


@dataclass
class BenchResult:
    case: str
    faces: int
    size: int
    batch: int
    mode: str
    sparse_ms: float
    sparse_peak_mb: float | None
    dense_ms: float | None
    dense_peak_mb: float | None

    @property
    def speedup(self) -> float | None:
        return None if self.dense_ms is None else self.dense_ms / self.sparse_ms


def default_cases() -> list[BenchCase]:
    cases = []
    for mode in ("silhouette", "rgba"):
        cases += [
            BenchCase("sphere 64 b1", 3, 64, 1, mode),
            BenchCase("sphere 64 b64", 3, 64, 64, mode),
            BenchCase("sphere 128 b1", 3, 128, 1, mode),
            BenchCase("sphere 256 b1", 3, 256, 1, mode),
            BenchCase("bumpy 20k 256 b1", 5, 256, 1, mode),
        ]
    return cases


def _inputs(case: BenchCase, device: torch.device):
    g = torch.Generator().manual_seed(0)
    mesh = icosphere(case.level, 0.4)
    bumps = 1 + 0.1 * torch.sin(7 * mesh.vertices[:, :1]) * torch.cos(5 * mesh.vertices[:, 1:2])
    vertices = (mesh.vertices * bumps).to(device).expand(case.batch, -1, -1).contiguous()
    colors = torch.rand(case.batch, mesh.num_vertices, 3, generator=g).to(device)
    camera = Camera.from_angles(azimuth=torch.arange(case.batch) * 15.0, device=device)
    settings = RasterSettings(case.size, sigma=3e-5 * (64 / case.size) ** 2)
    channels = 4 if case.mode == "rgba" else 1
    weights = torch.rand(case.batch, case.size, case.size, channels, generator=g).to(device).squeeze(-1)
    return vertices, mesh.faces.to(device), colors, camera, settings, weights


def _step_fn(case: BenchCase, device: torch.device, dense: bool) -> Callable[[], None]:
    vertices, faces, colors, camera, settings, weights = _inputs(case, device)
    vertices.requires_grad_(True)
    colors.requires_grad_(True)

    def step() -> None:
        if dense:
            image = dense_render(camera.project(vertices), faces, settings, colors if case.mode == "rgba" else None)
        elif case.mode == "rgba":
            image = render_rgba(vertices, faces, camera, settings, vertex_colors=colors)
        else:
            image = render_silhouette(vertices, faces, camera, settings)
        (image * weights).sum().backward()
        vertices.grad = colors.grad = None

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(step: Callable[[], None], device: torch.device) -> float | None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    status, clear = Path("/proc/self/status"), Path("/proc/self/clear_refs")
    if not status.exists() or not clear.exists():
        return None

    def field(name: str) -> int:
        line = next(l for l in status.read_text().splitlines() if l.startswith(name))
        return int(line.split()[1])  # kB

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back, so reused memory counts as growth
    except (OSError, AttributeError):
        pass
    try:
        clear.write_text("5")  # reset the peak resident set size
    except OSError:
        return None
    base = field("VmRSS:")
    step()
    return (field("VmHWM:") - base) / 1024


def _median_ms(step: Callable[[], None], device: torch.device, min_repeats: int, min_seconds: float) -> float:
    step()  # warm-up
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if len(times) >= 50:
            break
    return 1000 * statistics.median(times)


def run_case(case: BenchCase, device: torch.device, dense_budget_mb: float, min_repeats: int = 5, min_seconds: float = 1.0) -> BenchResult:
    """Median times of one case, sparse and (where it fits the budget) dense; peaks are left to :func:`measure_peaks`."""
    sparse_ms = _median_ms(_step_fn(case, device, dense=False), device, min_repeats, min_seconds)
    dense_ms = None
    if case.batch * case.size * case.size * case.faces * DENSE_BYTES_PER_PAIR / 2**20 <= dense_budget_mb:
        dense_ms = _median_ms(_step_fn(case, device, dense=True), device, min(3, min_repeats), 0.0)
    return BenchResult(case.name, case.faces, case.size, case.batch, case.mode, sparse_ms, None, dense_ms, None)


def measure_peaks(result: BenchResult, case: BenchCase, device: torch.device) -> None:
    """Fill in the peak memory of one forward + backward, sparse and (where it was timed) dense."""
    result.sparse_peak_mb = _peak_mb(_step_fn(case, device, dense=False), device)
    if result.dense_ms is not None:
        result.dense_peak_mb = _peak_mb(_step_fn(case, device, dense=True), device)


@contextlib.contextmanager
def _freed_memory_returned_to_the_os() -> Iterator[None]:
    """Within the block, make glibc serve every allocation of 128 KiB or more by mmap, so freed tensors leave the
    resident set.

    glibc otherwise raises its mmap threshold after the first large free and keeps later large blocks on the heap,
    which hides them from the resident-set peak that :func:`_peak_mb` reads. Mapping every block costs page faults
    (a training step took twice as long), so :func:`run` switches this on only after all timings are taken, and the
    block ends with the thresholds that glibc's own adjustment reaches after large frees (mmap 32 MiB, trim 64 MiB),
    so that whatever is timed later in the process (``softras bench --suite all``) runs as it would alone.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        yield
        return
    mallopt(_M_MMAP_THRESHOLD, 128 * 1024)  # setting it disables the dynamic adjustment
    try:
        yield
    finally:
        mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
        mallopt(_M_TRIM_THRESHOLD, 64 * 2**20)


def run(cases: list[BenchCase], device: torch.device, dense_budget_mb: float, progress: Callable[[str], None] | None = None) -> list[BenchResult]:
    """Time every case, then measure every peak (see :func:`_freed_memory_returned_to_the_os`)."""
    results = []
    for case in cases:
        if progress:
            progress(f"timing {case.mode} {case.name} ...")
        results.append(run_case(case, device, dense_budget_mb))
    with _freed_memory_returned_to_the_os() if device.type == "cpu" else contextlib.nullcontext():
        for result, case in zip(results, cases):
            if progress:
                progress(f"peak memory {case.mode} {case.name} ...")
            measure_peaks(result, case, device)
    return results


def format_table(results: list[BenchResult]) -> str:
    def num(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    head = f"{'mode':<11}{'case':<18}{'faces':>7}{'batch':>6}{'sparse ms':>11}{'peak MB':>9}{'dense ms':>11}{'peak MB':>9}{'speed-up':>10}"
    rows = [head, "-" * len(head)]
    for r in results:
        rows.append(
            f"{r.mode:<11}{r.case:<18}{r.faces:>7}{r.batch:>6}{r.sparse_ms:>11.2f}{num(r.sparse_peak_mb, '.0f'):>9}"
            f"{num(r.dense_ms, '.1f'):>11}{num(r.dense_peak_mb, '.0f'):>9}{'-' if r.speedup is None else f'{r.speedup:.0f}x':>10}"
        )
    return "\n".join(rows)
