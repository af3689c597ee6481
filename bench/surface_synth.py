"""A second synthetic domain for bench_recipe.py: machined metal surfaces, ok or defective.

Nothing like the PCB generator: grey brushed metal with tool marks, lighting
falloff, dust and sensor noise; the defects are another family (scratches,
pit clusters, stains), each small and low in contrast, one per defective
image. Two classes, ``ok`` and ``defect``, in the imbalance of a real line
(``ok_per_defect`` good parts for every bad one). Image ``i`` of a class is
drawn from ``default_rng([seed, class, i])``, so a folder is reproducible.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

__all__ = ["CLASSES", "generate_surfaces", "render_surface"]

CLASSES = ("defect", "ok")


def _brushed(rng: np.random.Generator, size: int) -> np.ndarray:
    """Grey metal: streaks along a random direction, tool-mark rings, a lighting falloff."""
    noise = rng.normal(0.0, 1.0, (size * 2, size * 2)).astype(np.float32)
    streaks = cv2.GaussianBlur(noise, (0, 0), sigmaX=float(rng.uniform(6, 14)), sigmaY=0.6)
    turn = cv2.getRotationMatrix2D((size, size), float(rng.uniform(0, 180)), 1.0)
    streaks = cv2.warpAffine(streaks, turn, (size * 2, size * 2))[
        size // 2 : size // 2 + size, size // 2 : size // 2 + size
    ]
    streaks = streaks / (streaks.std() + 1e-6)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx, cy = rng.uniform(-0.5, 1.5, 2)
    rings = np.sin(np.hypot(xx - cx, yy - cy) * float(rng.uniform(40, 90))) * float(rng.uniform(0, 3))
    gx, gy = rng.uniform(-1, 1, 2)
    light = float(rng.uniform(90, 170)) + float(rng.uniform(10, 40)) * (gx * (xx - 0.5) + gy * (yy - 0.5))
    return light + streaks * float(rng.uniform(4, 10)) + rings


def _dust(surface: np.ndarray, rng: np.random.Generator) -> None:
    """Specks a camera always sees: a few bright or dark pixels, not defects."""
    size = surface.shape[0]
    for _ in range(int(rng.integers(0, 6))):
        x, y = rng.integers(0, size, 2)
        surface[y, x] += float(rng.choice([-1, 1]) * rng.uniform(8, 20))


def _scratch(surface: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int, int]:
    size = surface.shape[0]
    length = rng.uniform(0.2, 0.5) * size
    angle = rng.uniform(0, np.pi)
    cx, cy = rng.uniform(0.3, 0.7, 2) * size
    bend = rng.uniform(-0.15, 0.15) * length
    t = np.linspace(-0.5, 0.5, 24)
    pts = np.stack(
        [
            cx + t * length * np.cos(angle) - bend * (t**2) * np.sin(angle),
            cy + t * length * np.sin(angle) + bend * (t**2) * np.cos(angle),
        ],
        axis=1,
    )
    mask = np.zeros_like(surface)
    cv2.polylines(mask, [np.round(pts * 4).astype(np.int32)], False, 1.0, thickness=int(rng.integers(3, 7)), shift=2)
    fade = np.clip(rng.uniform(0.4, 1.0) + 0.6 * np.sin(np.linspace(0, np.pi, size))[None, :], 0, 1)
    surface += cv2.GaussianBlur(mask, (0, 0), 0.7) * fade * float(rng.choice([-1, 1]) * rng.uniform(14, 30))
    return _box(pts)


def _pits(surface: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int, int]:
    size = surface.shape[0]
    centre = rng.uniform(0.25, 0.75, 2) * size
    pts = centre + rng.normal(0, size * 0.04, (int(rng.integers(1, 5)), 2))
    for x, y in pts:
        r = float(rng.uniform(1.2, 3.0)) * size / 96
        pit = np.zeros_like(surface)
        cv2.circle(pit, (int(x * 4), int(y * 4)), int(r * 4), 1.0, -1, shift=2)
        rim = cv2.GaussianBlur(pit, (0, 0), r) - pit
        surface += -float(rng.uniform(25, 50)) * cv2.GaussianBlur(pit, (0, 0), 0.6) + 12 * rim
    return _box(np.concatenate([pts - 4, pts + 4]))


def _stain(surface: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int, int]:
    size = surface.shape[0]
    centre = rng.uniform(0.25, 0.75, 2) * size
    radius = rng.uniform(0.07, 0.16) * size
    angles = np.linspace(0, 2 * np.pi, 14, endpoint=False)
    radii = radius * rng.uniform(0.6, 1.3, angles.size)
    pts = centre + np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    blob = np.zeros_like(surface)
    cv2.fillPoly(blob, [np.round(pts * 4).astype(np.int32)], 1.0, shift=2)
    surface += -float(rng.uniform(10, 22)) * cv2.GaussianBlur(blob, (0, 0), radius * 0.25)
    return _box(pts)


def _box(pts: np.ndarray) -> tuple[int, int, int, int]:
    lo, hi = np.floor(pts.min(axis=0)), np.ceil(pts.max(axis=0))
    return int(lo[0]), int(lo[1]), int(hi[0]) + 1, int(hi[1]) + 1


_DEFECTS = (_scratch, _pits, _stain)


def render_surface(defective: bool, *, size: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple | None]:
    """One ``size`` x ``size`` RGB uint8 surface image and its defect box (None when ok)."""
    surface = _brushed(rng, size)
    _dust(surface, rng)
    box = _DEFECTS[int(rng.integers(len(_DEFECTS)))](surface, rng) if defective else None
    surface += rng.normal(0, float(rng.uniform(1.5, 4.0)), surface.shape)  # sensor noise
    tint = np.array([1.0, 1.0, 1.0]) + rng.uniform(-0.04, 0.04, 3)  # a faintly coloured light
    image = np.clip(surface[..., None] * tint, 0, 255).astype(np.uint8)
    if box is not None:
        box = tuple(int(np.clip(v, 0, size)) for v in box)
    return image, box


def generate_surfaces(out: Path, *, defects: int, ok_per_defect: int, size: int, seed: int) -> dict[str, int]:
    """Write ``out/<class>/<class>_<i>.png`` (+ ``.json`` with the box) and return the counts."""
    counts = {"defect": defects, "ok": defects * ok_per_defect}
    for label, name in enumerate(CLASSES):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(counts[name]):
            image, box = render_surface(name == "defect", size=size, rng=np.random.default_rng([seed, label, i]))
            stem = folder / f"{name}_{i:04d}"
            if not cv2.imwrite(str(stem.with_suffix(".png")), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
                raise OSError(f"failed to write {stem.with_suffix('.png')}")
            stem.with_suffix(".json").write_text(json.dumps({"class": name, "box": list(box) if box else None}))
    return counts
