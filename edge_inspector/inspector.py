"""From frames to verdicts: ROI, resize and crop, inference, probabilities, heatmaps."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from edge_inspector.backends import Backend, BackendOptions, create_backend
from edge_inspector.bundle import Bundle, load_bundle
from edge_inspector.config import AgentConfig, HeatmapPolicy
from edge_inspector.frames import Frame
from edge_inspector.heatmap import overlay_heatmap
from edge_inspector.messages import Latency, ModelRef, Verdict
from edge_inspector.preprocess import ModelInput, crop_box, crop_roi, resize_and_crop
from edge_inspector.priority import default_inference_threads

__all__ = ["Inferred", "Inspection", "Inspector", "load_inspector", "softmax"]

log = logging.getLogger(__name__)

JPEG_QUALITY = 85


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Inferred:
    """A micro-batch through the model: its prepared frames, class probabilities and activation maps."""

    frames: list[Frame]
    probabilities: np.ndarray
    cam: np.ndarray
    milliseconds: float


@dataclass(frozen=True)
class Inspection:
    """What one frame turned out to be (before it gets a ``seq``)."""

    frame: Frame
    label: str
    is_defect: bool
    score: float
    confidence: float
    probabilities: dict[str, float]
    latency: Latency
    heatmap_jpeg: bytes | None
    roi_image: np.ndarray
    cam: np.ndarray
    """The label's activation map, to draw a heatmap later (the live view draws the newest frame's)."""


class Inspector:
    """Runs a backend on frames and turns its outputs into inspections.

    ``rois`` maps a camera's name to the region cut from its frames (None: the whole frame).
    """

    def __init__(
        self,
        bundle: Bundle,
        backend: Backend,
        *,
        rois: Mapping[str, tuple[int, int, int, int] | None],
        threshold: float | None,
        heatmap: HeatmapPolicy,
    ) -> None:
        manifest = bundle.manifest
        self.bundle = bundle
        self.backend = backend
        self.rois = rois
        self.classes = manifest.classes
        self.ok_index = manifest.classes.index(manifest.ok_class) if manifest.ok_class in manifest.classes else None
        self.threshold = threshold if threshold is not None else manifest.threshold
        self.heatmap = heatmap
        info = backend.describe()
        variant = manifest.variants[info["variant"]] if info.get("variant") in manifest.variants else None
        self.model = ModelRef(
            name=manifest.model_name,
            version=manifest.model_version,
            sha256=bundle.sha256(variant.file) if variant else "",
            backend=info["backend"],
            precision=info["precision"],
        )

    def warm_up(self) -> None:
        """One inference on a blank frame, so the first real frame is not slow."""
        size = self.bundle.manifest.input.size
        self.backend.infer(np.zeros((1, size, size, 3), np.uint8))

    def prepare(self, frame: Frame) -> Frame:
        """Cut the camera's ROI and resize and crop it for the model.

        Capture threads call this as they decode, so this work runs beside
        inference, not before it.

        Raises:
            ValueError: the camera's ROI lies outside the frame, or OpenCV cannot resize it.
        """
        started = time.perf_counter()
        roi = crop_roi(frame.image, self.rois.get(frame.camera))
        try:
            pixels = resize_and_crop(roi, self.bundle.manifest.input)
        except cv2.error as exc:  # an image OpenCV refuses (a sliver blown up too far): that frame fails, not the agent
            raise ValueError(f"cannot resize a {roi.shape[1]}x{roi.shape[0]} image for the model: {exc.err}") from exc
        spent = (time.perf_counter() - started) * 1000
        return replace(frame, prepared=ModelInput(roi, pixels, self.bundle.manifest.input, spent))

    def infer(self, frames: Sequence[Frame]) -> Inferred:
        """Run the model on a micro-batch (preparing frames that were not, or were for another model)."""
        spec = self.bundle.manifest.input
        ready = [f if f.prepared is not None and f.prepared.spec == spec else self.prepare(f) for f in frames]
        batch = np.stack([f.prepared.pixels for f in ready])  # type: ignore[union-attr]
        started = time.perf_counter()
        output = self.backend.infer(batch)
        spent = (time.perf_counter() - started) * 1000
        return Inferred(ready, softmax(output.logits.astype(np.float64)), output.cam, spent)

    def judge(self, inferred: Inferred) -> list[Inspection]:
        """Labels, scores and heatmaps of an inferred micro-batch."""
        results = []
        for i, frame in enumerate(inferred.frames):
            assert frame.prepared is not None
            started = time.perf_counter()
            probs = inferred.probabilities[i]
            label, score, is_defect = self._decide(probs)
            cam = inferred.cam[i, self.classes.index(label)]
            jpeg = None
            wanted = self.heatmap is HeatmapPolicy.ALWAYS or (self.heatmap is HeatmapPolicy.DEFECTS and is_defect)
            if wanted or frame.reply is not None:  # an HTTP answer always carries its heatmap
                jpeg = self.heatmap_jpeg(frame.prepared.roi, cam)
            results.append(
                Inspection(
                    frame=frame,
                    label=label,
                    is_defect=bool(is_defect),
                    score=min(max(score, 0.0), 1.0),
                    confidence=float(probs[self.classes.index(label)]),
                    probabilities={name: round(float(p), 6) for name, p in zip(self.classes, probs, strict=True)},
                    latency=Latency(
                        preprocess_ms=round(frame.prepared.milliseconds, 3),
                        inference_ms=round(inferred.milliseconds, 3),
                        postprocess_ms=round((time.perf_counter() - started) * 1000, 3),
                        total_ms=round((time.monotonic() - frame.monotonic) * 1000, 3),
                        batch=len(inferred.frames),
                    ),
                    heatmap_jpeg=jpeg,
                    roi_image=frame.prepared.roi,
                    cam=cam,
                )
            )
        return results

    def inspect(self, frames: Sequence[Frame]) -> list[Inspection]:
        """Prepare, infer and judge a micro-batch in one go."""
        return self.judge(self.infer(frames))

    def verdict(self, item: Inspection, *, station: str, seq: int) -> Verdict:
        """The verdict of an inspection: on MQTT once the spool has given it its ``seq``; 0 for POST /inspect."""
        return Verdict(
            station=station,
            camera=item.frame.camera,
            seq=seq,
            part_id=item.frame.part_id,
            captured_at=item.frame.captured_at,
            label=item.label,
            is_defect=item.is_defect,
            score=item.score,
            confidence=item.confidence,
            probabilities=item.probabilities,
            threshold=self.threshold,
            model=self.model,
            latency=item.latency,
            heatmap=item.heatmap_jpeg is not None and item.frame.reply is None,
        )

    def _decide(self, probs: np.ndarray) -> tuple[str, float, bool]:
        """(label, P(defect), is_defect): a defect names its likeliest defect class."""
        if self.ok_index is None:  # no "ok" class: every class is a finding
            predicted = int(probs.argmax())
            return self.classes[predicted], float(probs[predicted]), True
        score = float(1.0 - probs[self.ok_index])
        if score < self.threshold:
            return self.classes[self.ok_index], score, False
        defect_probs = probs.copy()
        defect_probs[self.ok_index] = -1.0
        return self.classes[int(defect_probs.argmax())], score, True

    def heatmap_jpeg(self, roi: np.ndarray, cam: np.ndarray) -> bytes:
        """Blend the class map over the part of the ROI the model saw; JPEG bytes."""
        x0, y0, x1, y1 = crop_box(roi.shape[0], roi.shape[1], self.bundle.manifest.input)
        picture = roi.copy()
        picture[y0:y1, x0:x1] = overlay_heatmap(np.ascontiguousarray(roi[y0:y1, x0:x1]), cam)
        ok, encoded = cv2.imencode(
            ".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        )
        if not ok:
            raise RuntimeError("JPEG encoding of the heatmap failed")
        return encoded.tobytes()


def load_inspector(config: AgentConfig) -> Inspector:
    """The configured bundle on the configured backend, warmed up.

    Raises:
        EdgeInspectorError: the bundle or the backend cannot be loaded (BundleError, BackendError).
    """
    cfg = config.model
    bundle = load_bundle(cfg.bundle)
    threads = cfg.threads or default_inference_threads()
    options = BackendOptions(threads=threads, max_batch=cfg.max_batch, device=cfg.device)
    backend = create_backend(bundle, cfg.backend, cfg.precision, options)
    try:
        rois = {camera.name: camera.roi for camera in config.cameras}
        inspector = Inspector(bundle, backend, rois=rois, threshold=cfg.threshold, heatmap=config.mqtt.heatmap)
        inspector.warm_up()
    except Exception:
        backend.close()
        raise
    log.info("model %s %s on %s", bundle.manifest.model_name, bundle.manifest.model_version, backend.describe())
    return inspector
