"""Head pose (yaw, pitch, roll in degrees) from the 5 landmarks, by PnP on a generic face.

No head-pose network is available offline (Hopenet/6DRepNet weights are not on PyPI), so pose
comes from fitting a generic 3D face to the 5 points. The paper's pose metric compares the
pose of the swap with the pose of the target; a generic model is biased for any one person,
but the bias cancels in that difference, which is all the metric uses.

Generic model (millimetres, object axes = OpenCV camera axes of a frontal face: x to the
image right, y down, z away from the camera; origin at the nose tip). Its x, y are the mean
layout of our detector's 5 points (mesh-derived: eye-contour centres, nose tip, lip corners 61
and 291) on 13 near-frontal portraits (the shared test photos and skimage's astronaut), with
the eyes levelled and scaled to a 63 mm distance between eye centres: eyes 0.61 eye distances
above the nose tip, lip corners 0.42 below it and 0.43 to each side. (The ArcFace alignment
template puts the mouth 0.55 below the nose: fitted to our points it reads ~45 degrees of
pitch on frontal photos.) Depths are the usual anthropometric ones: eye centres 27 mm and lip
corners 25 mm behind the nose tip, as in common generic PnP face models.

Camera: pinhole, focal length = image width in pixels, principal point = image centre, no
distortion. Angles: R = Rz(roll) @ Ry(yaw) @ Rx(pitch) (object -> camera); (0, 0, 0) is a face
looking straight into the camera.
"""

from __future__ import annotations

import cv2
import numpy as np

FACE_MODEL_3D = np.array(
    [
        [-31.5, -38.5, 27.0],  # eye_1 centre (smaller x in an upright face)
        [31.5, -38.5, 27.0],  # eye_2 centre
        [0.0, 0.0, 0.0],  # nose tip
        [-27.1, 26.5, 25.0],  # mouth_1 corner
        [27.1, 26.5, 25.0],  # mouth_2 corner
    ],
    dtype=np.float64,
)
EYE_DISTANCE_MM = 63.0
# BlazeFace's first four keypoints (eyes, nose tip, mouth centre) on the same generic face, the
# mouth centre midway between the corners: a pose read by another network than the mesh the
# five landmarks come from (the training's geometry loss uses that mesh).
KEYPOINT_MODEL_3D = np.vstack([FACE_MODEL_3D[:3], FACE_MODEL_3D[3:].mean(axis=0)])


def camera_matrix(width: int, height: int) -> np.ndarray:
    """Pinhole intrinsics: focal = image width, principal point = image centre."""
    return np.array([[width, 0.0, width / 2.0], [0.0, width, height / 2.0], [0.0, 0.0, 1.0]])


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R = Rz(roll) @ Ry(yaw) @ Rx(pitch), angles in degrees."""
    y, p, r = np.radians([yaw, pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def angles_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) in degrees of R = Rz(roll) @ Ry(yaw) @ Rx(pitch)."""
    r = np.asarray(rotation, np.float64)
    yaw = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    pitch = np.arctan2(r[2, 1], r[2, 2])
    roll = np.arctan2(r[1, 0], r[0, 0])
    return np.degrees([yaw, pitch, roll])


def project(rotation: np.ndarray, translation: np.ndarray, width: int, height: int) -> np.ndarray:
    """The generic model's 5 points seen through the camera (5 x 2 pixels); for tests and checks."""
    rvec, _ = cv2.Rodrigues(np.asarray(rotation, np.float64))
    points, _ = cv2.projectPoints(FACE_MODEL_3D, rvec, np.asarray(translation, np.float64).reshape(3, 1),
                                  camera_matrix(width, height), None)
    return points.reshape(5, 2)


def head_pose(landmarks: np.ndarray, image_shape: tuple[int, ...], model: np.ndarray = FACE_MODEL_3D) -> np.ndarray:
    """(yaw, pitch, roll) in degrees of a face with these landmarks (the 5, or BlazeFace's first
    4 with ``model=KEYPOINT_MODEL_3D``; eyes then nose tip first) in an image of this shape.

    Iterative PnP (Levenberg-Marquardt) seeded with a frontal pose at the distance the eye
    spacing implies; a face too close to degenerate (points on a line) gives NaNs.
    """
    points = np.asarray(landmarks, np.float64).reshape(len(model), 2)
    height, width = image_shape[:2]
    camera = camera_matrix(width, height)
    eye_px = float(np.linalg.norm(points[1] - points[0]))
    if not np.all(np.isfinite(points)) or eye_px < 1e-6:
        return np.full(3, np.nan)
    z = camera[0, 0] * EYE_DISTANCE_MM / eye_px
    nose = points[2]
    tvec = np.array([[(nose[0] - camera[0, 2]) * z / camera[0, 0]], [(nose[1] - camera[1, 2]) * z / camera[1, 1]], [z]])
    # the roll seed from the eye line keeps the fit in the right basin for tilted faces
    roll0 = np.degrees(np.arctan2(points[1, 1] - points[0, 1], points[1, 0] - points[0, 0]))
    rvec, _ = cv2.Rodrigues(rotation_from_angles(0.0, 0.0, roll0))
    ok, rvec, tvec = cv2.solvePnP(np.asarray(model, np.float64), points, camera, None, rvec=rvec, tvec=tvec,
                                  useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return np.full(3, np.nan)
    rotation, _ = cv2.Rodrigues(rvec)
    return angles_from_rotation(rotation)


def pose_difference(a: np.ndarray, b: np.ndarray) -> float:
    """L2 norm of the (yaw, pitch, roll) difference, each wrapped to [-180, 180) degrees."""
    diff = (np.asarray(a, np.float64) - np.asarray(b, np.float64) + 180.0) % 360.0 - 180.0
    return float(np.linalg.norm(diff))
