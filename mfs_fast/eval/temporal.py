"""Temporal steadiness of a swapped clip: identity flicker and landmark jitter.

``id_similarity_std``: standard deviation over frames of the result's cosine similarity to
its source (a steady identity gives 0). ``landmark_jitter``: mean norm of the second
difference of the 5 landmarks over consecutive processed frames (acceleration: constant
motion costs nothing), divided by that frame's eye distance, so it is scale-free. Reported
for the result and for the target: the difference is the jitter the swap adds.
"""

from __future__ import annotations

import numpy as np


def landmark_jitter(sequence: list[np.ndarray]) -> float | None:
    """Mean |x[t+1] - 2 x[t] + x[t-1]| / eye distance over frames and points (None below 3 frames)."""
    if len(sequence) < 3:
        return None
    points = np.stack([np.asarray(p, np.float64).reshape(5, 2) for p in sequence])  # T x 5 x 2
    second = points[2:] - 2.0 * points[1:-1] + points[:-2]
    eye = np.linalg.norm(points[1:-1, 1] - points[1:-1, 0], axis=1)  # the middle frame's eye distance
    return float((np.linalg.norm(second, axis=2).mean(axis=1) / np.maximum(eye, 1e-6)).mean())


def similarity_std(similarities: list[float]) -> float | None:
    """Standard deviation of per-frame identity similarities (None below 2 frames)."""
    return float(np.std(similarities)) if len(similarities) >= 2 else None


def clip_temporal(similarities: list[float], result_landmarks: list[np.ndarray],
                  target_landmarks: list[np.ndarray]) -> dict[str, float | None]:
    """The temporal metrics of one face track in one clip."""
    return {
        "frames": len(similarities),
        "id_similarity_std": similarity_std(similarities),
        "landmark_jitter_result": landmark_jitter(result_landmarks),
        "landmark_jitter_target": landmark_jitter(target_landmarks),
    }
