"""A classical face swap: the source's face mesh warped onto the target's, in aligned crops.

Every triangle of the 468-point face mesh (one fixed triangulation) is mapped affinely from the
source crop onto the same triangle of the target crop (:func:`warp_maps`: one triangle index
raster, then every pixel's affine map in one float32 pass). The warped face is then

1. colour-matched per region (:func:`match_colour_regions`): the skin (the face without eyes,
   brows, lips and mouth) moves its per-channel CIE Lab mean and spread to the target skin's,
   each eye (with its lids) and the lips to the target's same region, so the skin's correction
   does not tint the eyes and an open mouth or dark brows do not bias the skin's (the brows
   take the skin's correction: their own would move them, and identity, to the target's);
2. blended into the target with a Laplacian pyramid (:func:`multiband_blend`): fine detail
   switches over within a pixel or two at the (eroded) hull, coarse shading over a wide band,
   so the seam goes without a blur over the face; half of the coarsest level (shading over
   ~32 px) is the target's, which carries its lighting onto the face;
3. kept to what the source really shows of its face (:func:`seen_face`): triangles that fold
   over (the far side of a turned target's face) and source pixels that are not face (hair
   across a cheek, background beyond the jaw: far from the source's skin colour, outside its
   inner face and features) are left to the target, which the warp would otherwise smear into
   dark streaks over the target's cheek; likewise the target's own non-face pixels (its hair
   across the forehead or a cheek) stay the target's, instead of being painted over with the
   source's skin;
4. given back the target's eye openings and mouth interior (inside the lid margins and the
   inner lip line of the target's mesh: nothing where they are closed), which a 2D warp cannot
   produce: it stretches a closed source mouth over an open target one, and its eyes look
   where the source's did.

Identity (texture, proportions inside the face) comes from the source, pose, expression, gaze
and colour from the target. It needs no learned weights, which makes it the training teacher
(:mod:`mfs_fast.train.warp_teacher`) and an evaluation baseline (``mfs-fast eval --methods
mesh-warp``). ``blend="feather"``, ``regions=False`` and ``keep_openings=False`` give the first
version's plain feather, whole-face colour match and warped interiors, ``keep_unseen=True``
every covered pixel whatever the source or the target shows there (for comparison).
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from .types import Face

FEATHER_SIGMA = 3.0  # Gaussian blur of the feather blend mask (pixels at 224)
ERODE = 5  # the hull is shrunk this much before blending: its edge is jawline and forehead
TARGET_LIGHTING = 0.5  # share of the blend's coarsest level (shading over ~32 px) that is the target's
REACH = (16.0, 32.0)  # the blend's changes fade out between these distances from the blended face (px)
PYRAMID_LEVELS = 4  # multi-band blend: 224 -> 112 -> 56 -> 28 (+ the 14 px residual)
INTERIOR_SIGMA = 1.0  # feather of the kept eye openings and mouth interior (pixels at 224)
REGION_SIGMA = 2.0  # soft edges between the colour-matched regions
SKIN_STATS_ERODE = 12  # skin statistics away from the hull's edge (hair, background there) (px)
SCALE_RANGE = (0.5, 2.0)  # limits of the Lab spread ratio in the whole-face colour match (first version)
# ... and per region: target skin is often smoother (video, make-up) than a source photo's, and
# its spread alone would flatten the source's texture (identity, detail) toward it
REGION_SCALE_RANGE = (0.7, 1.5)

# MediaPipe face-mesh (468-point canonical mesh) index polygons, in contour order, as in
# MediaPipe's FACEMESH_* connection sets. "Right"/"left" are the subject's (right = smaller x
# in an upright, unmirrored face), as in :mod:`.face_mesh`.
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)  # lid margins
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_BROW = (46, 53, 52, 65, 55, 107, 66, 105, 63, 70)  # lower edge out -> in, upper edge in -> out
LEFT_BROW = (276, 283, 282, 295, 285, 336, 296, 334, 293, 300)
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
KEEP_OPENINGS = ("eyes", "mouth")  # what the target keeps where the mesh says it is open
EYE_CORNERS = ((33, 133), (263, 362))  # (outer, inner) of the right and left eye: eye widths
RIGHT_EYE_GAP, LEFT_EYE_GAP = (159, 145), (386, 374)  # upper and lower lid margin, mid-eye
MOUTH_GAP, MOUTH_CORNERS = (13, 14), (78, 308)  # inner lip line: mid upper / lower, corners
EYE_OPEN = (0.12, 0.2)  # lid gap / eye width: from closed (target keeps nothing) to open (all)
MOUTH_OPEN = (0.08, 0.16)  # lip gap / mouth width, the same for the mouth interior
EYE_MARGIN = 0.15  # eye colour region: the lid margins grown by this many eye widths (lids, lashes)
BROW_MARGIN = 0.1
LIP_MARGIN = 0.05
SKIN_DISTANCE = 3.0  # source pixels further than this (Lab, in skin spreads per channel, RMS) are not skin
SKIN_SPREAD_FLOOR = (4.0, 3.0, 3.0)  # Lab: the least spread a skin channel is taken to have
FEATURE_MARGIN = 0.3  # eye widths around the eyes, brows and lips (and their hull) taken as face whatever their colour
MAX_STRETCH = 2.5  # a triangle stretched more than this (against the face's scale) is left to the target


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (T x 3 point indices) of a mesh shape, degenerate ones dropped."""
    from scipy.spatial import Delaunay

    triangles = Delaunay(points).simplices.astype(np.int64)
    a, b, c = (points[triangles[:, k]] for k in range(3))
    area = np.abs((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]) / 2
    return triangles[area > 1e-3]


def _triangle_index(target_points: np.ndarray, triangles: np.ndarray, size: int) -> np.ndarray:
    """size x size int32 raster of which triangle covers each pixel (-1: none; a later triangle
    wins where two overlap). Kept for the last few target meshes (an image target is warped onto
    once per source)."""
    key = (np.ascontiguousarray(target_points, np.float64).tobytes(), np.ascontiguousarray(triangles).tobytes(), size)
    with _INDEX_LOCK:
        index = _INDEX_CACHE.pop(key, None)
    if index is None:
        index = np.full((size, size), -1, np.int32)
        corners = np.round(np.asarray(target_points, np.float64)[triangles] * 16).astype(np.int32)
        fill = cv2.fillConvexPoly
        for t in range(len(corners)):
            fill(index, corners[t], t, cv2.LINE_8, 4)
        index.setflags(write=False)
    with _INDEX_LOCK:
        while _INDEX_CACHE and len(_INDEX_CACHE) >= INDEX_CACHE_SIZE:
            _INDEX_CACHE.pop(next(iter(_INDEX_CACHE)))
        if INDEX_CACHE_SIZE > 0:
            _INDEX_CACHE[key] = index  # most recently used last
    return index


INDEX_CACHE_SIZE = 16
_INDEX_CACHE: dict[tuple, np.ndarray] = {}
_INDEX_LOCK = threading.Lock()


def warp_maps(source_points: np.ndarray, target_points: np.ndarray, triangles: np.ndarray,
              size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per target pixel, where to sample the source (map_x, map_y) and whether a triangle covers it.

    Each triangle's affine map (target -> source: a 2 x 2 matrix about its first corner, and
    that corner in both crops) is looked up for every pixel through the triangle index raster
    and applied densely in float32 (no index lists, no per-pixel float64 matrices)."""
    index = _triangle_index(target_points, triangles, size)
    # per triangle, the affine map target -> source about its first corner (float32 keeps its
    # precision there even for slim triangles): S = S0 + (T - T0) @ A
    target = np.asarray(target_points, np.float64)[triangles]  # T x 3 x 2
    source = np.asarray(source_points, np.float64)[triangles]
    edges_t, edges_s = target[:, 1:] - target[:, :1], source[:, 1:] - source[:, :1]  # T x 2 x 2
    good = np.abs(np.linalg.det(edges_t)) > 1e-6
    coefficients = np.zeros((len(triangles) + 1, 8))  # row T: the "no triangle" row (-1), all zeros
    coefficients[:-1][good, :4] = np.linalg.solve(edges_t[good], edges_s[good]).reshape(-1, 4)
    coefficients[:-1, 4:6], coefficients[:-1, 6:] = target[:, 0], source[:, 0]
    c = coefficients.astype(np.float32)[index]  # size x size x 8
    dx = np.arange(size, dtype=np.float32)[None, :] - c[..., 4]
    dy = np.arange(size, dtype=np.float32)[:, None] - c[..., 5]
    map_x = dx * c[..., 0] + dy * c[..., 2] + c[..., 6]
    map_y = dx * c[..., 1] + dy * c[..., 3] + c[..., 7]
    covered = np.append(good, False)[index]  # index -1: the appended False
    return map_x, map_y, covered


def _lab_transform(warped: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) per Lab channel that move ``warped``'s (N x 3) mean and spread to ``target``'s."""
    scale = np.clip(target.std(axis=0) / np.maximum(warped.std(axis=0), 1e-3), *SCALE_RANGE)
    return scale, target.mean(axis=0) - warped.mean(axis=0) * scale


def match_colour(warped: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Per-channel mean and standard deviation (in CIE Lab, where lightness and tint separate)
    of RGB ``warped`` moved to ``target``'s inside ``region`` (one transform for the whole image)."""
    if region.sum() < 16:
        return warped
    warped_lab = cv2.cvtColor(warped.astype(np.float32), cv2.COLOR_RGB2Lab)
    target_lab = cv2.cvtColor(target.astype(np.float32), cv2.COLOR_RGB2Lab)
    scale, shift = _lab_transform(warped_lab[region], target_lab[region])
    moved = warped_lab * scale + shift
    return np.clip(cv2.cvtColor(moved.astype(np.float32), cv2.COLOR_Lab2RGB), 0.0, 1.0)


def _polygon(points: np.ndarray, indices: tuple[int, ...], size: int, grow: float = 0.0) -> np.ndarray:
    """uint8 0/1 mask of a mesh polygon, grown by ``grow`` pixels (a dilation)."""
    return _polygons(points, [indices], size, grow)


def _polygons(points: np.ndarray, polygons: list[tuple[int, ...]], size: int, grow: float = 0.0) -> np.ndarray:
    """uint8 0/1 mask of the union of mesh polygons, grown by ``grow`` pixels (one dilation of
    the union: the same as the union of each one's)."""
    mask = np.zeros((size, size), np.uint8)
    for indices in polygons:
        cv2.fillPoly(mask, [np.round(points[list(indices)] * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    radius = int(round(grow))
    if radius > 0:
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    return mask


def eye_width(points: np.ndarray) -> float:
    """Mean corner-to-corner width of the two eyes (pixels)."""
    return float(np.mean([np.linalg.norm(points[a] - points[b]) for a, b in EYE_CORNERS]))


def region_masks(points: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """uint8 0/1 masks of the mesh's regions in a ``size`` crop: ``right_eye``, ``left_eye``
    (lid margins grown by EYE_MARGIN eye widths: lids and lashes), ``right_brow``,
    ``left_brow``, ``lips`` (outer lip line minus the mouth), ``mouth`` (inside the inner lip
    line)."""
    points = np.asarray(points, np.float64)
    width = eye_width(points)
    mouth = _polygon(points, LIPS_INNER, size)
    return {
        "right_eye": _polygon(points, RIGHT_EYE, size, EYE_MARGIN * width),
        "left_eye": _polygon(points, LEFT_EYE, size, EYE_MARGIN * width),
        "right_brow": _polygon(points, RIGHT_BROW, size, BROW_MARGIN * width),
        "left_brow": _polygon(points, LEFT_BROW, size, BROW_MARGIN * width),
        "lips": _polygon(points, LIPS_OUTER, size, LIP_MARGIN * width) & (1 - mouth),
        "mouth": mouth,
    }


def openness(points: np.ndarray) -> dict[str, float]:
    """How open the mesh says each eye and the mouth are: lid gap over eye width (open eyes
    ~0.3-0.4, closed < 0.1), lip gap over mouth width (closed < 0.05)."""
    points = np.asarray(points, np.float64)

    def ratio(a: int, b: int, c: int, d: int) -> float:
        return float(np.linalg.norm(points[a] - points[b]) / max(np.linalg.norm(points[c] - points[d]), 1e-6))

    return {"right_eye": ratio(*RIGHT_EYE_GAP, *EYE_CORNERS[0]), "left_eye": ratio(*LEFT_EYE_GAP, *EYE_CORNERS[1]),
            "mouth": ratio(*MOUTH_GAP, *MOUTH_CORNERS)}


def openings_mask(points: np.ndarray, size: int) -> np.ndarray:
    """float32 size x size weight of the target's own pixels: inside each eye's lid margins and
    the inner lip line, times how open the mesh says it is (ramps EYE_OPEN, MOUTH_OPEN: a
    closed mouth under a moustache keeps nothing), feathered by INTERIOR_SIGMA."""
    points = np.asarray(points, np.float64)
    how_open = openness(points)
    parts = []
    if "eyes" in KEEP_OPENINGS:
        parts += [("right_eye", RIGHT_EYE, EYE_OPEN), ("left_eye", LEFT_EYE, EYE_OPEN)]
    if "mouth" in KEEP_OPENINGS:
        parts.append(("mouth", LIPS_INNER, MOUTH_OPEN))
    keep = np.zeros((size, size), np.float32)
    for name, polygon, (closed, wide) in parts:
        weight = float(np.clip((how_open[name] - closed) / (wide - closed), 0.0, 1.0))
        if weight > 0:
            keep = np.maximum(keep, _polygon(points, polygon, size).astype(np.float32) * weight)
    if not keep.any():
        return keep
    return cv2.GaussianBlur(keep, (0, 0), INTERIOR_SIGMA)


COLOUR_REGIONS = ("right_eye", "left_eye")  # brows and lips take the skin's: their own would move identity
FEATURES = ("right_eye", "left_eye", "right_brow", "left_brow", "lips", "mouth")  # not skin


def _masked_stats(lab: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-channel mean and standard deviation of ``lab`` inside a uint8 mask, and its pixel count."""
    count = cv2.countNonZero(mask)
    if count == 0:
        return np.zeros(3), np.zeros(3), 0
    mean, std = cv2.meanStdDev(lab, mask=mask)
    return mean.ravel(), std.ravel(), count


def _region_transform(warped_lab: np.ndarray, target_lab: np.ndarray,
                      mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) per Lab channel moving ``warped_lab``'s mean and spread inside ``mask``
    to ``target_lab``'s there (None: fewer than MIN_REGION pixels)."""
    w_mean, w_std, count = _masked_stats(warped_lab, mask)
    if count < MIN_REGION:
        return None
    t_mean, t_std, _ = _masked_stats(target_lab, mask)
    scale = np.clip(t_std / np.maximum(w_std, 1e-3), *REGION_SCALE_RANGE)
    return scale, t_mean - w_mean * scale


MIN_REGION = 8  # pixels (at the half resolution the statistics are taken at)


def match_colour_regions(warped: np.ndarray, target: np.ndarray, face: np.ndarray,
                         regions: dict[str, np.ndarray]) -> np.ndarray:
    """:func:`match_colour` per region: the skin (``face`` without the eyes, brows, lips and
    mouth) and each of COLOUR_REGIONS get their own Lab transform, estimated on their own
    pixels of both images (the warped face sits on the target's mesh: the same pixels) at half
    resolution; the transforms are mixed per pixel with softened region masks (REGION_SIGMA).
    A region with too few pixels takes the skin's transform."""
    ys, xs = np.nonzero(face)
    if len(ys) == 0:
        return warped
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1  # work in the face's box
    box = (slice(y0, y1), slice(x0, x1))
    half = (slice(y0, y1, 2), slice(x0, x1, 2))
    features = np.zeros(face.shape, np.uint8)
    for name in FEATURES:
        features |= regions[name]
    warped_lab = cv2.cvtColor(np.ascontiguousarray(warped[box], np.float32), cv2.COLOR_RGB2Lab)
    warped_half = np.ascontiguousarray(warped_lab[::2, ::2])
    target_half = cv2.cvtColor(np.ascontiguousarray(target[half], np.float32), cv2.COLOR_RGB2Lab)
    inner = cv2.erode(face, np.ones((2 * SKIN_STATS_ERODE + 1,) * 2, np.uint8)) if SKIN_STATS_ERODE else face
    skin_mask = np.ascontiguousarray(((inner > 0) & (features == 0))[half]).view(np.uint8)
    skin = _region_transform(warped_half, target_half, skin_mask)
    if skin is None:  # no skin to speak of: the whole face
        skin = _region_transform(warped_half, target_half, np.ascontiguousarray(face[half]))
        if skin is None:
            return warped
    scales, shifts, weights = [], [], []
    for name in COLOUR_REGIONS:
        moved = _region_transform(warped_half, target_half, np.ascontiguousarray(regions[name][half]))
        if moved is None:
            continue
        scales.append(moved[0] - skin[0])
        shifts.append(moved[1] - skin[1])
        weights.append(regions[name][box])
    scale_map = skin[0].astype(np.float32)
    shift_map = skin[1].astype(np.float32)
    if weights:
        soft = cv2.GaussianBlur(cv2.merge(weights).astype(np.float32), (0, 0), REGION_SIGMA)
        soft = soft.reshape(*soft.shape[:2], len(weights))
        soft /= np.maximum(soft.sum(axis=-1, keepdims=True), 1.0)  # regions overlap: at most all of a pixel
        scale_map = scale_map + soft @ np.asarray(scales, np.float32)
        shift_map = shift_map + soft @ np.asarray(shifts, np.float32)
    moved_lab = (warped_lab * scale_map + shift_map).astype(np.float32)
    out = np.array(warped, np.float32)
    out[box] = np.clip(cv2.cvtColor(moved_lab, cv2.COLOR_Lab2RGB), 0.0, 1.0)
    return out


def multiband_blend(front: np.ndarray, back: np.ndarray, mask: np.ndarray, levels: int = PYRAMID_LEVELS,
                    residual: float = 1.0) -> np.ndarray:
    """``front`` over ``back`` (H x W x C float32) by a Laplacian pyramid: each band of the
    difference front - back weighted by the mask's Gaussian pyramid at that scale, the
    coarsest residual's weight further multiplied by ``residual`` (0: ``back``'s alone)."""
    difference = (front - back).astype(np.float32)
    weight = mask.astype(np.float32)
    bands, weights = [], []
    for _ in range(levels):
        if min(difference.shape[:2]) < 2:
            break
        smaller = cv2.pyrDown(difference)
        bands.append(difference - cv2.pyrUp(smaller, dstsize=difference.shape[1::-1]))
        weights.append(weight)
        difference, weight = smaller, cv2.pyrDown(weight)
    blended = difference * (weight * residual)[..., None]
    for band, w in zip(reversed(bands), reversed(weights)):
        blended = cv2.pyrUp(blended, dstsize=band.shape[1::-1]) + band * w[..., None]
    return back + blended


def unfolded_triangles(source_points: np.ndarray, target_points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Boolean per triangle: it keeps the orientation most of the face keeps from source to
    target (one that flips against it is folded over by a turned face: it stands for skin the
    target does not show; a mirrored target flips them all, which is no fold) and is not
    stretched more than MAX_STRETCH times in any direction against the face's overall scale
    (such a triangle smears a sliver of the source, often its eye corner or hair, into streaks)."""
    source = np.asarray(source_points, np.float64)[triangles]
    target = np.asarray(target_points, np.float64)[triangles]
    edges_s, edges_t = source[:, 1:] - source[:, :1], target[:, 1:] - target[:, :1]  # T x 2 x 2 (rows: edges)
    det_s, det_t = np.linalg.det(edges_s), np.linalg.det(edges_t)
    same_side = det_s * det_t
    if same_side.sum() < 0:  # the target mesh as a whole is mirrored (a flipped crop): that is no fold
        same_side = -same_side
    keep = same_side > 0
    linear = np.zeros_like(edges_s)  # source -> target: edges_s @ L = edges_t
    linear[keep] = np.linalg.solve(edges_s[keep], edges_t[keep])
    stretch = np.linalg.svd(linear, compute_uv=False)  # T x 2, largest first
    scale = np.sqrt(np.median(np.abs(det_t[keep]) / np.abs(det_s[keep]))) if keep.any() else 1.0
    return keep & (stretch[:, 0] <= MAX_STRETCH * scale)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` (bool) with every region it encloses (not reachable from the border) added."""
    outside = np.pad(~mask, 1, constant_values=True).astype(np.uint8)  # a free ring around: one seed reaches all
    filled = cv2.floodFill(outside, None, (0, 0), 2)[1]
    return filled[1:-1, 1:-1] != 2


def seen_face(source: np.ndarray, points: np.ndarray) -> np.ndarray:
    """uint8 0/1 mask of the source crop (RGB float in [0, 1]) that shows its face: the central
    face (the convex hull of the eyes, brows and lips, grown by FEATURE_MARGIN eye widths) whatever
    its colour (moustache, make-up, shadows), and elsewhere in the mesh hull the pixels within
    SKIN_DISTANCE of the skin's colour (median and spread of the central face's skin: hair seldom
    reaches there). Hair over a cheek and background inside the hull's edge are left out."""
    size = source.shape[0]
    points = np.asarray(points, np.float64)
    width = eye_width(points)
    hull = hull_mask(points, size) > 0
    polygons = (RIGHT_EYE, LEFT_EYE, RIGHT_BROW, LEFT_BROW, LIPS_OUTER)
    features = _polygons(points, list(polygons), size, FEATURE_MARGIN * width)
    central_points = points[[i for polygon in polygons for i in polygon]]
    central = _polygon(central_points, tuple(cv2.convexHull(central_points.astype(np.float32), returnPoints=False)
                                             .ravel().tolist()), size, FEATURE_MARGIN * width) > 0
    skin = central & hull & (features == 0)
    if skin.sum() < MIN_REGION:
        return hull.astype(np.uint8)
    lab = cv2.cvtColor(np.asarray(source, np.float32), cv2.COLOR_RGB2Lab)
    skin_lab = lab[skin]
    median = np.median(skin_lab, axis=0)
    spread = np.maximum(1.4826 * np.median(np.abs(skin_lab - median), axis=0), SKIN_SPREAD_FLOOR)
    outer = hull & ~central  # the skin test is needed only there (a third of the pixels)
    distance = np.sqrt((((lab[outer] - median) / spread) ** 2).mean(axis=-1))
    face = hull & central
    face[outer] = distance < SKIN_DISTANCE
    face = cv2.morphologyEx(face.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))  # lone pixels out
    return face


def mesh_warp_swap(source: np.ndarray, target: np.ndarray, source_points: np.ndarray, target_points: np.ndarray,
                   triangles: np.ndarray, *, blend: str = "multiband", regions: bool = True,
                   keep_openings: bool = True, keep_unseen: bool = False) -> np.ndarray:
    """One swap, H x W x 3 float arrays in [0, 1]: the source face warped where the source shows
    it, colour-matched per region, blended by a Laplacian pyramid, with the target's eye
    openings and mouth interior. ``blend="feather"``, ``regions=False``, ``keep_openings=False``
    and ``keep_unseen=True`` give back the first version's plain feathered blend, whole-face
    colour match, warped interiors and folded or non-face source pixels."""
    size = target.shape[0]
    target = np.asarray(target, np.float32)
    map_x, map_y, covered = warp_maps(source_points, target_points, triangles, size)
    warped = cv2.remap(np.asarray(source, np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if not keep_unseen:  # folded or streaking triangles, non-face source or target pixels, where they reach the edge
        good = unfolded_triangles(source_points, target_points, triangles)
        seen = seen_face(np.asarray(source, np.float32), source_points).astype(np.float32)
        trusted = covered & np.append(good, False)[_triangle_index(target_points, triangles, size)]
        trusted &= cv2.remap(seen, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) > 0.5
        trusted &= seen_face(target, target_points) > 0
        covered &= fill_holes(trusted)
    face = cv2.erode(covered.astype(np.uint8), np.ones((ERODE, ERODE), np.uint8))
    if regions:
        masks = region_masks(target_points, size)
        warped = match_colour_regions(warped, target, face, masks)
    else:
        warped = match_colour(warped, target, face > 0)
    if blend == "feather":
        alpha = cv2.GaussianBlur(face.astype(np.float32), (0, 0), FEATHER_SIGMA)[..., None]
        out = warped * alpha + target * (1.0 - alpha)
    elif blend == "multiband":
        warped[~covered] = target[~covered]  # outside the mesh the difference is nothing
        change = multiband_blend(warped, target, face, PYRAMID_LEVELS, 1.0 - TARGET_LIGHTING) - target
        # the coarse bands reach far: faded out between REACH px from the face (all else the target's, exactly)
        distance = cv2.distanceTransform(1 - face, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        fade = np.clip((REACH[1] - distance) / (REACH[1] - REACH[0]), 0.0, 1.0)
        out = target + change * fade[..., None]
    else:
        raise ValueError(f"blend must be 'multiband' or 'feather', got {blend!r}")
    if keep_openings:
        keep = openings_mask(target_points, size)[..., None]
        out = out * (1.0 - keep) + target * keep
    return np.clip(out, 0.0, 1.0)


def crop_mesh_points(frame: np.ndarray, face: Face, matrix: np.ndarray, mesh) -> np.ndarray:
    """The 468 face-mesh points (x, y) of ``face``, mapped into crop coordinates by ``matrix``."""
    from .face_mesh import roi_from_detection

    points = mesh.run(frame, [roi_from_detection(face.box, face.landmarks)])[0].points[:, :2]
    return (np.hstack([points, np.ones((len(points), 1))]) @ matrix.T).astype(np.float32)


def hull_mask(points: np.ndarray, size: int) -> np.ndarray:
    """uint8 size x size mask (255 = face): the convex hull of the mesh points."""
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points.astype(np.int32)), 255)
    return mask
