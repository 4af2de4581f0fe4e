"""mfs_fast.eval: pose, Fréchet distance and jitter on synthetic data with known answers; the
baselines' known scores on shared photos; `mfs-fast eval` end to end on a talking-head clip."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import scipy.linalg
from conftest import SHARED_ASSETS, _astronaut_bgr

from mfs_fast.cli import main
from mfs_fast.eval.frechet import frechet_distance, trace_sqrt_product
from mfs_fast.eval.pose import head_pose, pose_difference, project, rotation_from_angles
from mfs_fast.eval.temporal import landmark_jitter

IMAGES = SHARED_ASSETS / "images"
CLIP = SHARED_ASSETS / "videos" / "talking_d3.mp4"
needs_assets = pytest.mark.skipif(not (IMAGES / "obama_1.jpg").is_file() or not CLIP.is_file(),
                                  reason=f"shared test assets not found at {SHARED_ASSETS}")


@pytest.fixture(scope="module")
def detector():
    from mfs_fast.face import create_detector

    return create_detector("blazeface")


@pytest.mark.parametrize("angles", [(20.0, -10.0, 5.0), (-30.0, 15.0, -12.0), (0.0, 0.0, 0.0)])
def test_head_pose_recovers_a_projected_generic_face(angles):
    points = project(rotation_from_angles(*angles), [40.0, -25.0, 700.0], 640, 480)
    assert np.abs(head_pose(points, (480, 640)) - np.array(angles)).max() < 3.0


def test_head_pose_of_degenerate_points_is_nan():
    assert np.isnan(head_pose(np.zeros((5, 2)), (100, 100))).all()
    assert pose_difference([179.0, 0, 0], [-179.0, 0, 0]) == pytest.approx(2.0)


def test_rotating_a_photo_in_plane_changes_roll_by_that_angle(detector):
    image = _astronaut_bgr()
    h, w = image.shape[:2]
    base = head_pose(max(detector.detect(image), key=lambda f: f.area).landmarks, image.shape)
    # +15 in OpenCV is counter-clockwise on screen; roll (about the camera's z, y down) is clockwise
    rotated = cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), 15.0, 1.0), (w, h),
                             borderMode=cv2.BORDER_REPLICATE)
    pose = head_pose(max(detector.detect(rotated), key=lambda f: f.area).landmarks, rotated.shape)
    assert abs((pose[2] - base[2]) - (-15.0)) < 3.0


def test_frechet_distance_is_zero_on_itself_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 64)) * 0.1
    assert frechet_distance(a, a) < 1e-6
    shifts = [frechet_distance(a, a + s) for s in (0.01, 0.05, 0.1)]
    assert shifts == sorted(shifts) and shifts[0] > 0
    assert shifts[2] == pytest.approx(64 * 0.1**2, rel=1e-4)  # a pure shift adds |shift|^2
    assert frechet_distance(a[:1], a[1:2]) > 0  # one sample each: covariances are eps * I


def test_trace_of_the_product_root_matches_scipy_sqrtm():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 32)), rng.normal(size=(20, 32)) + 0.3
    ca, cb = np.cov(x, rowvar=False) + 1e-6 * np.eye(32), np.cov(y, rowvar=False) + 1e-6 * np.eye(32)
    assert trace_sqrt_product(ca, cb) == pytest.approx(np.trace(np.real(scipy.linalg.sqrtm(ca @ cb))), rel=1e-6)


def test_landmark_jitter_ignores_steady_motion_and_sees_shake():
    base = np.array([[0, 0], [10, 0], [5, 5], [2, 9], [8, 9]], np.float64)
    steady = [base + [2.0 * t, 1.0 * t] for t in range(6)]
    assert landmark_jitter(steady) == pytest.approx(0.0, abs=1e-12)
    shaky = [base + [(-1.0) ** t, 0.0] for t in range(6)]  # second difference 4 px, eye distance 10
    assert landmark_jitter(shaky) == pytest.approx(0.4)
    assert landmark_jitter(steady[:2]) is None


@pytest.fixture(scope="module")
def baseline_metrics(detector):
    from mfs_fast.eval import create_methods, evaluate
    from mfs_fast.identity import create_identity_encoder

    if not (IMAGES / "rudd_1.jpg").is_file():
        pytest.skip(f"shared test assets not found at {SHARED_ASSETS}")
    sources = [IMAGES / n for n in ("obama_1.jpg", "biden_1.jpg", "jolie_1.jpg")]
    methods = create_methods(["target", "paste-source", "mesh-warp"], detector)
    return evaluate(sources, [IMAGES / "rudd_1.jpg"], methods, detector=detector,
                    encoder=create_identity_encoder("dlib")).metrics


@needs_assets
def test_paste_source_is_always_retrieved(baseline_metrics):
    overall = baseline_metrics["methods"]["paste-source"]["overall"]
    assert overall["faces"] == 3 and overall["id_retrieval_top1_pct"] == 100.0
    assert overall["id_gain"] > 0.05


@needs_assets
def test_mesh_warp_moves_identity_and_follows_the_target_pose(baseline_metrics):
    """The classical swap: the source's identity comes through (retrieved, cosine gained) while
    the head pose stays the target's far more than with the pasted source."""
    warp = baseline_metrics["methods"]["mesh-warp"]["overall"]
    paste = baseline_metrics["methods"]["paste-source"]["overall"]
    assert warp["faces"] == 3 and warp["id_retrieval_top1_pct"] >= 66.0 and warp["id_gain"] > 0.02
    assert warp["pose_error_deg"] < 0.5 * paste["pose_error_deg"], (warp, paste)


@needs_assets
def test_target_unchanged_gains_nothing_and_keeps_pose(baseline_metrics):
    overall = baseline_metrics["methods"]["target"]["overall"]
    assert abs(overall["id_gain"]) < 1e-6
    assert overall["pose_error_deg"] == pytest.approx(0.0, abs=1e-9)
    assert overall["expression_error_5pt"] == pytest.approx(0.0, abs=1e-9)
    assert overall["fd_dlib"] < 1e-6


@needs_assets
def test_cli_eval_end_to_end_on_a_talking_head_clip(tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["eval", "--sources", str(IMAGES / "obama_1.jpg"), "--targets", str(CLIP), "--random-weights", "0",
               "--frames", "3", "--stride", "2", "-o", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "1 source" in captured.err  # the warning: retrieval is trivial
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "metrics.md", "samples.png"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"protocol", "options", "software", "sources", "targets", "methods"} <= set(metrics)
    assert set(metrics["methods"]) == {"model", "target", "paste-source"}
    model = metrics["methods"]["model"]
    assert model["overall"]["faces"] == 3 and model["overall"]["id_retrieval_top1_pct"] == "n/a (1 source)"
    for key in ("id_similarity", "id_gain", "pose_error_deg", "expression_error", "fd_dlib"):
        assert isinstance(model["overall"][key], float), key
    assert {"id_similarity_std", "landmark_jitter_result", "landmark_jitter_target"} <= set(model["temporal"])
    assert model["temporal"]["landmark_jitter_target"] is not None
    assert metrics["options"]["frames"] == 3 and metrics["options"]["random_weights_seed"] == 0
    header = (out / "metrics.md").read_text().splitlines()[2]
    assert "| FD-dlib |" in header and "FID" not in header
    grid = cv2.imread(str(out / "samples.png"))
    assert grid is not None and grid.shape[1] >= 5 * 192  # source | target | 3 methods


def test_eval_methods_are_a_registry():
    from mfs_fast.errors import MfsError
    from mfs_fast.eval import EVAL_METHODS, METHODS, TargetMethod, create_methods

    assert EVAL_METHODS.names() == list(METHODS) == ["model", "target", "paste-source", "mesh-warp"]
    with pytest.raises(MfsError) as caught:  # every name checked before anything is built
        create_methods(["model", "nope"], detector=None)
    assert str(caught.value) == "unknown eval method 'nope'; choose one of model, target, paste-source, mesh-warp"
    with pytest.raises(MfsError, match="exactly one of --weights DIR or --random-weights SEED"):
        create_methods(["target", "model"], detector=None)
    assert [type(m) for m in create_methods(["target"], detector=None)] == [TargetMethod]


def test_cli_eval_errors_are_clear(tmp_path, capsys):
    assert main(["eval", "--sources", str(tmp_path / "nope.jpg"), "--targets", str(tmp_path / "nope.jpg"),
                 "--random-weights", "0", "-o", str(tmp_path / "o")]) == 2
    assert "input not found" in capsys.readouterr().err
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), _astronaut_bgr())
    assert main(["eval", "--sources", str(image), "--targets", str(image), "-o", str(tmp_path / "o")]) == 2
    assert "--random-weights" in capsys.readouterr().err
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 127, np.uint8))
    assert main(["eval", "--sources", str(blank), "--targets", str(image), "--methods", "target",
                 "-o", str(tmp_path / "o")]) == 2
    assert "no face found in source" in capsys.readouterr().err


def test_keypoint_pose_recovers_a_projected_generic_face():
    """BlazeFace's four points (eyes, nose tip, mouth centre) on the generic face give its pose."""
    from mfs_fast.eval.pose import FACE_MODEL_3D, KEYPOINT_MODEL_3D

    rng = np.random.default_rng()
    angles = rng.uniform([-25, -15, -15], [25, 15, 15])
    five = project(rotation_from_angles(*angles), [30.0, -20.0, 650.0], 640, 480)
    four = np.vstack([five[:3], five[3:].mean(axis=0)])  # the mouth centre is on the corners' line at this scale
    assert np.abs(head_pose(four, (480, 640), KEYPOINT_MODEL_3D) - angles).max() < 3.0
    assert len(KEYPOINT_MODEL_3D) == 4 and np.allclose(KEYPOINT_MODEL_3D[:3], FACE_MODEL_3D[:3])


def test_both_poses_follow_an_in_plane_rotation(detector):
    """The measurer's two poses, mesh landmarks and BlazeFace keypoints, both read a 15 degree roll."""
    from mfs_fast.eval.expression import ExpressionMeter
    from mfs_fast.eval.measure import FaceMeasurer
    from mfs_fast.face.blazeface import BlazeFace
    from mfs_fast.identity import create_identity_encoder

    measurer = FaceMeasurer(detector, create_identity_encoder("dlib"), ExpressionMeter(False), BlazeFace())
    image = _astronaut_bgr()
    h, w = image.shape[:2]
    rotated = cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), 15.0, 1.0), (w, h),
                             borderMode=cv2.BORDER_REPLICATE)
    base, turned = (measurer.measure(x, measurer.detect(x)[:1])[0] for x in (image, rotated))
    assert abs((turned.pose[2] - base.pose[2]) + 15.0) < 3.0
    assert abs((turned.keypoint_pose[2] - base.keypoint_pose[2]) + 15.0) < 3.0
