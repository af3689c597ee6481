"""From frames to verdicts: ROI, resize and crop, inference, probabilities, heatmaps."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from edge_inspector.backends import Backend, BackendOptions, create_backend
from edge_inspector.bundle import Bundle, load_bundle
from edge_inspector.capture.mailbox import Frame
from edge_inspector.config import AgentConfig, HeatmapPolicy
from edge_inspector.heatmap import heatmap_jpeg
from edge_inspector.messages import Latency, ModelRef, Verdict
from edge_inspector.preprocess import ModelInput, crop_roi, resize_and_crop
from edge_inspector.priority import default_inference_threads

__all__ = ["HeatmapRule", "Inferred", "Inspection", "Inspector", "decide", "heatmap_rule", "load_inspector", "softmax"]

log = logging.getLogger(__name__)

HeatmapRule = Callable[[Frame, bool], bool]
"""Whether a frame's inspection draws its heatmap, given the frame and whether it is a defect."""


def heatmap_rule(policy: HeatmapPolicy) -> HeatmapRule:
    """The rule of ``mqtt.heatmap``: every frame, defects only, or none."""
    return lambda _frame, is_defect: policy is HeatmapPolicy.ALWAYS or (policy is HeatmapPolicy.DEFECTS and is_defect)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def decide(
    probabilities: np.ndarray, classes: Sequence[str], ok_index: int | None, threshold: float
) -> tuple[str, float, bool]:
    """(label, score, is_defect) of one frame's class probabilities.

    With an ``ok`` class the score is P(defect) = 1 - P(ok); at or above
    ``threshold`` the frame is a defect and its label the likeliest defect
    class (even when ``ok`` is likelier than each), below it ``ok``. Without
    one every class is a finding: the likeliest, its probability the score.
    """
    if ok_index is None:
        predicted = int(probabilities.argmax())
        return classes[predicted], float(probabilities[predicted]), True
    score = float(1.0 - probabilities[ok_index])
    if score < threshold:
        return classes[ok_index], score, False
    defects = probabilities.copy()
    defects[ok_index] = -1.0
    return classes[int(defects.argmax())], score, True


@dataclass(frozen=True)
class Inferred:
    """A micro-batch through the model: its prepared frames, class probabilities and activation maps."""

    frames: list[Frame]
    probabilities: np.ndarray
    activation: np.ndarray
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
    activation: np.ndarray
    """The label's activation map, to draw a heatmap later (the live view draws the newest frame's)."""


class Inspector:
    """Runs a backend on frames and turns its outputs into inspections.

    ``rois`` maps a camera's name to the region cut from its frames (None: the whole frame);
    ``heatmap`` says which inspections draw their heatmap.
    """

    def __init__(
        self,
        bundle: Bundle,
        backend: Backend,
        *,
        rois: Mapping[str, tuple[int, int, int, int] | None],
        threshold: float | None,
        heatmap: HeatmapRule,
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
        return Inferred(ready, softmax(output.logits.astype(np.float64)), output.activation, spent)

    def judge(self, inferred: Inferred) -> list[Inspection]:
        """Labels, scores and heatmaps of an inferred micro-batch."""
        results = []
        for i, frame in enumerate(inferred.frames):
            assert frame.prepared is not None
            started = time.perf_counter()
            probs = inferred.probabilities[i]
            label, score, is_defect = decide(probs, self.classes, self.ok_index, self.threshold)
            activation = inferred.activation[i, self.classes.index(label)]
            jpeg = self.heatmap_jpeg(frame.prepared.roi, activation) if self.heatmap(frame, is_defect) else None
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
                    activation=activation,
                )
            )
        return results

    def inspect(self, frames: Sequence[Frame]) -> list[Inspection]:
        """Prepare, infer and judge a micro-batch in one go."""
        return self.judge(self.infer(frames))

    def verdict(self, item: Inspection, *, station: str, seq: int, heatmap: bool) -> Verdict:
        """The verdict of an inspection: on MQTT once the spool has given it its ``seq``; 0 for POST /inspect.
        ``heatmap``: whether its heatmap goes out on the heatmap topic."""
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
            heatmap=heatmap,
        )

    def heatmap_jpeg(self, roi: np.ndarray, activation: np.ndarray) -> bytes:
        """The heatmap of one class's activation map over a camera ROI, as this model saw it; JPEG bytes."""
        return heatmap_jpeg(roi, activation, self.bundle.manifest.input)


def load_inspector(config: AgentConfig, heatmap: HeatmapRule | None = None) -> Inspector:
    """The configured bundle on the configured backend, warmed up; heatmaps by ``heatmap``, else ``mqtt.heatmap``.

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
        rule = heatmap or heatmap_rule(config.mqtt.heatmap)
        inspector = Inspector(bundle, backend, rois=rois, threshold=cfg.threshold, heatmap=rule)
        inspector.warm_up()
    except Exception:
        backend.close()
        raise
    log.info("model %s %s on %s", bundle.manifest.model_name, bundle.manifest.model_version, backend.describe())
    return inspector
