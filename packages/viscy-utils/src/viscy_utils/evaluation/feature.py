"""Hand-crafted features of single-cell images and of cell tracks.

Texture (Haralick) and symmetry (Zernike) descriptors are computed here with numpy and
scikit-image, so mahotas is not needed.
"""

from __future__ import annotations

from math import factorial
from typing import TypedDict

import numpy as np
import pandas as pd
from scipy import ndimage, stats
from skimage.feature import graycomatrix, graycoprops
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import regionprops_table

__all__ = [
    "AngularFeatures",
    "CellFeatures",
    "DisplacementFeatures",
    "DynamicFeatures",
    "IntensityFeatures",
    "MorphologyFeatures",
    "SymmetryDescriptor",
    "TextureFeatures",
    "TrackFeatures",
    "disc_intensity_features",
]

#: statistics of :func:`disc_intensity_features`, in column order
DISC_STATISTICS = ("mean", "std", "min", "max", "median")

#: Zernike moments are computed on a disc of this radius (pixels) up to this degree
ZERNIKE_RADIUS = 32
ZERNIKE_DEGREE = 8


class IntensityFeatures(TypedDict):
    """First-order intensity statistics."""

    mean_intensity: float
    std_dev: float
    min_intensity: float
    max_intensity: float
    kurtosis: float
    skewness: float
    spectral_entropy: float
    iqr: float
    weighted_intensity_gradient: float


class TextureFeatures(TypedDict):
    """Grey-level co-occurrence texture statistics."""

    spectral_entropy: float
    contrast: float
    entropy: float
    homogeneity: float
    dissimilarity: float
    texture: float


class MorphologyFeatures(TypedDict):
    """Shape statistics of the segmented objects."""

    area: float
    perimeter: float
    perimeter_area_ratio: float
    eccentricity: float
    intensity_localization: float
    masked_intensity: float
    masked_area: float


class SymmetryDescriptor(TypedDict):
    """Rotation-invariant symmetry descriptors."""

    zernike_std: float
    zernike_mean: float
    radial_intensity_gradient: float


class TrackFeatures(TypedDict):
    """Speed statistics of a track."""

    instantaneous_velocity: list[float]
    mean_velocity: float
    max_velocity: float
    min_velocity: float
    std_velocity: float


class DisplacementFeatures(TypedDict):
    """Path statistics of a track."""

    total_distance: float
    net_displacement: float
    directional_persistence: float


class AngularFeatures(TypedDict):
    """Turning statistics of a track."""

    mean_angular_velocity: float
    max_angular_velocity: float
    std_angular_velocity: float


def _spectral_entropy(image: np.ndarray) -> float:
    """Shannon entropy (bits) of the normalised power spectrum."""
    power = np.abs(np.fft.fft2(image)) ** 2
    total = power.sum()
    if total == 0:
        return 0.0
    p = power[power > 0] / total
    return float(-np.sum(p * np.log2(p)))


def _haralick(glcm: np.ndarray) -> np.ndarray:
    """Compute the 13 Haralick features of normalised co-occurrence matrices ``(levels, levels, n)``.

    Returns an array ``(n, 13)``: angular second moment, contrast, correlation, variance, inverse
    difference moment, sum average, sum variance, sum entropy, entropy, difference variance,
    difference entropy and the two information measures of correlation (logarithms base 2).
    """
    eps = np.finfo(np.float64).eps
    p = np.moveaxis(glcm.astype(np.float64), -1, 0)  # (n, L, L)
    p = p / np.maximum(p.sum(axis=(1, 2), keepdims=True), eps)
    levels = p.shape[1]
    i, j = np.indices((levels, levels))
    px, py = p.sum(axis=2), p.sum(axis=1)
    k = np.arange(levels)
    mu_x, mu_y = px @ k, py @ k
    sd_x = np.sqrt(np.maximum(px @ k**2 - mu_x**2, 0))
    sd_y = np.sqrt(np.maximum(py @ k**2 - mu_y**2, 0))
    p_sum = np.stack([np.bincount((i + j).ravel(), weights=m.ravel(), minlength=2 * levels - 1) for m in p])
    p_diff = np.stack([np.bincount(np.abs(i - j).ravel(), weights=m.ravel(), minlength=levels) for m in p])

    def entropy(q: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        return -np.sum(q * np.log2(q + eps), axis=axes)

    asm = np.sum(p**2, axis=(1, 2))
    contrast = np.sum(p * (i - j) ** 2, axis=(1, 2))
    correlation = (np.sum(p * i * j, axis=(1, 2)) - mu_x * mu_y) / np.maximum(sd_x * sd_y, eps)
    variance = np.sum(p * (i[None] - mu_x[:, None, None]) ** 2, axis=(1, 2))
    idm = np.sum(p / (1 + (i - j) ** 2), axis=(1, 2))
    sums = np.arange(2 * levels - 1)
    sum_average = p_sum @ sums
    sum_variance = np.sum(p_sum * (sums[None] - sum_average[:, None]) ** 2, axis=1)
    sum_entropy = entropy(p_sum, (1,))
    hxy = entropy(p, (1, 2))
    diffs = np.arange(levels)
    diff_mean = p_diff @ diffs
    diff_variance = np.sum(p_diff * (diffs[None] - diff_mean[:, None]) ** 2, axis=1)
    diff_entropy = entropy(p_diff, (1,))
    hx, hy = entropy(px, (1,)), entropy(py, (1,))
    outer = px[:, :, None] * py[:, None, :]
    hxy1 = -np.sum(p * np.log2(outer + eps), axis=(1, 2))
    hxy2 = -np.sum(outer * np.log2(outer + eps), axis=(1, 2))
    imc1 = (hxy - hxy1) / np.maximum(np.maximum(hx, hy), eps)
    imc2 = np.sqrt(np.clip(1 - np.exp(-2 * (hxy2 - hxy)), 0, None))
    return np.stack(
        [asm, contrast, correlation, variance, idm, sum_average, sum_variance, sum_entropy, hxy]
        + [diff_variance, diff_entropy, imc1, imc2],
        axis=1,
    )


def _zernike_moments(image: np.ndarray, radius: int = ZERNIKE_RADIUS, degree: int = ZERNIKE_DEGREE) -> np.ndarray:
    """Magnitudes of the Zernike moments (n <= degree, 0 <= m <= n, n - m even) on a disc.

    The disc of ``radius`` pixels is centred on the intensity centre of mass; moments are
    normalised by the total intensity, which makes them invariant to rotation and brightness.
    """
    image = np.asarray(image, dtype=np.float64)
    total = image.sum()
    moments = [(n, m) for n in range(degree + 1) for m in range(n + 1) if (n - m) % 2 == 0]
    if total <= 0:
        return np.zeros(len(moments))
    yy, xx = np.indices(image.shape, dtype=np.float64)
    cy, cx = (yy * image).sum() / total, (xx * image).sum() / total
    dy, dx = (yy - cy) / radius, (xx - cx) / radius
    rho = np.hypot(dx, dy)
    inside = rho <= 1
    rho, theta, weights = rho[inside], np.arctan2(dy[inside], dx[inside]), image[inside] / total
    values = []
    for n, m in moments:
        radial = np.zeros_like(rho)
        for s in range((n - m) // 2 + 1):
            coef = (
                (-1) ** s
                * factorial(n - s)
                / (factorial(s) * factorial((n + m) // 2 - s) * factorial((n - m) // 2 - s))
            )
            radial += coef * rho ** (n - 2 * s)
        values.append((n + 1) / np.pi * np.abs(np.sum(weights * radial * np.exp(-1j * m * theta))))
    return np.asarray(values)


class CellFeatures:
    """Intensity, texture, morphology and symmetry features of one 2-D cell image.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image.
    segmentation_mask : numpy.ndarray, optional
        Label image of the same shape (needed for morphology features).
    """

    def __init__(self, image: np.ndarray, segmentation_mask: np.ndarray | None = None):
        image = np.asarray(image, dtype=np.float64)
        if image.ndim != 2:
            raise ValueError(f"CellFeatures needs a 2-D image, got shape {image.shape}")
        if segmentation_mask is not None and np.shape(segmentation_mask) != image.shape:
            raise ValueError(f"segmentation_mask shape {np.shape(segmentation_mask)} differs from image {image.shape}")
        self.image = image
        self.segmentation_mask = None if segmentation_mask is None else np.asarray(segmentation_mask)
        self.intensity_features: IntensityFeatures | None = None
        self.texture_features: TextureFeatures | None = None
        self.morphology_features: MorphologyFeatures | None = None
        self.symmetry_descriptor: SymmetryDescriptor | None = None

    def _rescaled_uint8(self) -> np.ndarray:
        lo, hi = self.image.min(), self.image.max()
        scaled = (self.image - lo) / (hi - lo) if hi > lo else np.zeros_like(self.image)
        return np.round(scaled * 255).astype(np.uint8)

    def compute_intensity_features(self) -> IntensityFeatures:
        """Compute mean, spread, extremes, moments, spectral entropy, IQR and weighted gradient.

        The weighted intensity gradient is the mean gradient magnitude weighted by intensity.
        Kurtosis (Fisher) and skewness are NaN for a constant image.
        """
        img = self.image
        constant = np.ptp(img) == 0
        q75, q25 = np.percentile(img, [75, 25])
        gy, gx = np.gradient(img)
        weight = img.sum()
        self.intensity_features = IntensityFeatures(
            mean_intensity=float(img.mean()),
            std_dev=float(img.std()),
            min_intensity=float(img.min()),
            max_intensity=float(img.max()),
            kurtosis=float("nan") if constant else float(stats.kurtosis(img, axis=None, fisher=True)),
            skewness=float("nan") if constant else float(stats.skew(img, axis=None)),
            spectral_entropy=_spectral_entropy(img),
            iqr=float(q75 - q25),
            weighted_intensity_gradient=float((np.hypot(gx, gy) * img).sum() / weight) if weight != 0 else 0.0,
        )
        return self.intensity_features

    def compute_texture_features(self) -> TextureFeatures:
        """Compute GLCM (distance 1, 45 degrees) statistics and the Haralick texture summary.

        ``texture`` is the mean over the 13 Haralick features of their peak-to-peak range across
        the four directions (0, 45, 90, 135 degrees).
        """
        img8 = self._rescaled_uint8()
        glcm = graycomatrix(img8, distances=[1], angles=[np.pi / 4], levels=256, symmetric=True, normed=True)
        directions = graycomatrix(
            img8, distances=[1], angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=256, symmetric=True
        )[:, :, 0, :]
        spectral = _spectral_entropy(self.image)
        self.texture_features = TextureFeatures(
            spectral_entropy=spectral,
            contrast=float(graycoprops(glcm, "contrast")[0, 0]),
            entropy=spectral,
            homogeneity=float(graycoprops(glcm, "homogeneity")[0, 0]),
            dissimilarity=float(graycoprops(glcm, "dissimilarity")[0, 0]),
            texture=float(np.mean(np.ptp(_haralick(directions), axis=0))),
        )
        return self.texture_features

    def compute_morphology_features(self) -> MorphologyFeatures:
        """Compute region shape statistics and intensity localisation (needs a non-empty mask)."""
        mask = self.segmentation_mask
        assert mask is not None and np.any(mask), "compute_morphology_features needs a non-empty segmentation mask"
        labels = mask.astype(np.int64) if mask.dtype != bool else mask.astype(np.int64)
        props = regionprops_table(labels, properties=("area", "perimeter", "eccentricity"))
        area, perimeter = float(np.mean(props["area"])), float(np.mean(props["perimeter"]))
        distance = ndimage.distance_transform_edt(labels > 0)
        blurred = gaussian(self.image, sigma=0.6, preserve_range=True)
        otsu = blurred > threshold_otsu(blurred) if np.ptp(blurred) > 0 else np.zeros_like(blurred, dtype=bool)
        self.morphology_features = MorphologyFeatures(
            area=area,
            perimeter=perimeter,
            perimeter_area_ratio=perimeter / area if area else 0.0,
            eccentricity=float(np.mean(props["eccentricity"])),
            intensity_localization=float((self.image * distance).sum() / distance.sum()) if distance.sum() else 0.0,
            masked_intensity=float(self.image[otsu].mean()) if otsu.any() else 0.0,
            masked_area=float(otsu.sum()),
        )
        return self.morphology_features

    def compute_symmetry_descriptor(self) -> SymmetryDescriptor:
        """Compute Zernike-moment statistics and the slope of the radial mean-intensity profile."""
        moments = _zernike_moments(self.image)
        yy, xx = np.indices(self.image.shape)
        cy, cx = (np.asarray(self.image.shape) - 1) / 2
        radius = np.hypot(yy - cy, xx - cx).astype(np.int64).ravel()
        counts = np.bincount(radius)
        profile = np.bincount(radius, weights=self.image.ravel()) / np.maximum(counts, 1)
        valid = counts > 0
        slope = float(np.polyfit(np.flatnonzero(valid), profile[valid], 1)[0]) if valid.sum() > 1 else 0.0
        self.symmetry_descriptor = SymmetryDescriptor(
            zernike_std=float(np.std(moments)), zernike_mean=float(np.mean(moments)), radial_intensity_gradient=slope
        )
        return self.symmetry_descriptor

    def compute_all_features(self) -> pd.DataFrame:
        """Compute every feature group (morphology only with a mask); return a one-row frame."""
        self.compute_intensity_features()
        self.compute_texture_features()
        self.compute_symmetry_descriptor()
        if self.segmentation_mask is not None:
            self.compute_morphology_features()
        return self.to_df()

    def to_df(self) -> pd.DataFrame:
        """Return the features computed so far as a one-row DataFrame (empty before any compute)."""
        row: dict[str, float] = {}
        for group in (
            self.intensity_features,
            self.texture_features,
            self.morphology_features,
            self.symmetry_descriptor,
        ):
            if group is not None:
                row.update(group)
        return pd.DataFrame([row]) if row else pd.DataFrame()


class DynamicFeatures:
    """Velocity, displacement and turning features of cell tracks.

    Parameters
    ----------
    tracking_df : pandas.DataFrame
        One row per (track, time point) with numeric ``t``, ``x`` and ``y`` and a ``track_id``.
    """

    def __init__(self, tracking_df: pd.DataFrame):
        missing = [c for c in ("track_id", "t", "x", "y") if c not in tracking_df.columns]
        if missing:
            raise ValueError(f"tracking_df lacks columns {missing}")
        for column in ("t", "x", "y"):
            if not pd.api.types.is_numeric_dtype(tracking_df[column]):
                raise ValueError(f"tracking_df column {column!r} must be numeric, got {tracking_df[column].dtype}")
        self.tracking_df = tracking_df
        self.velocity_features: TrackFeatures | None = None
        self.displacement_features: DisplacementFeatures | None = None
        self.angular_features: AngularFeatures | None = None

    def _track(self, track_id: int) -> tuple[np.ndarray, np.ndarray]:
        track = self.tracking_df[self.tracking_df["track_id"] == track_id].sort_values("t")
        if track.empty:
            raise KeyError(f"track_id {track_id!r} not in tracking_df")
        return track["t"].to_numpy(dtype=np.float64), track[["x", "y"]].to_numpy(dtype=np.float64)

    def compute_velocity_features(self, track_id: int) -> TrackFeatures:
        """Compute per-step speed (first element 0) and its statistics."""
        t, xy = self._track(track_id)
        steps = np.linalg.norm(np.diff(xy, axis=0), axis=1)
        dt = np.diff(t)
        velocity = np.concatenate([[0.0], np.divide(steps, dt, out=np.zeros_like(steps), where=dt != 0)])
        self.velocity_features = TrackFeatures(
            instantaneous_velocity=velocity.tolist(),
            mean_velocity=float(velocity.mean()),
            max_velocity=float(velocity.max()),
            min_velocity=float(velocity.min()),
            std_velocity=float(velocity.std()),
        )
        return self.velocity_features

    def compute_displacement_features(self, track_id: int) -> DisplacementFeatures:
        """Compute path length, start-to-end distance and their ratio (zeros below two points)."""
        _, xy = self._track(track_id)
        if len(xy) < 2:
            self.displacement_features = DisplacementFeatures(
                total_distance=0.0, net_displacement=0.0, directional_persistence=0.0
            )
            return self.displacement_features
        total = float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum())
        net = float(np.linalg.norm(xy[-1] - xy[0]))
        self.displacement_features = DisplacementFeatures(
            total_distance=total, net_displacement=net, directional_persistence=net / total if total else 0.0
        )
        return self.displacement_features

    def compute_angular_features(self, track_id: int) -> AngularFeatures:
        """Compute turning angle per step divided by the step's time (zeros below three points)."""
        t, xy = self._track(track_id)
        if len(xy) < 3:
            self.angular_features = AngularFeatures(
                mean_angular_velocity=0.0, max_angular_velocity=0.0, std_angular_velocity=0.0
            )
            return self.angular_features
        delta = np.diff(xy, axis=0)
        heading = np.arctan2(delta[:, 1], delta[:, 0])
        turn = np.abs((np.diff(heading) + np.pi) % (2 * np.pi) - np.pi)
        dt = np.diff(t)[1:]
        angular = np.divide(turn, dt, out=np.zeros_like(turn), where=dt != 0)
        self.angular_features = AngularFeatures(
            mean_angular_velocity=float(angular.mean()),
            max_angular_velocity=float(angular.max()),
            std_angular_velocity=float(angular.std()),
        )
        return self.angular_features

    def compute_all_features(self, track_id: int) -> pd.DataFrame:
        """Compute every feature group of one track; return a one-row frame."""
        self.compute_velocity_features(track_id)
        self.compute_displacement_features(track_id)
        self.compute_angular_features(track_id)
        return self.to_df()

    def to_df(self) -> pd.DataFrame:
        """Return the features computed so far as a one-row DataFrame (empty before any compute)."""
        row: dict = {}
        for group in (self.velocity_features, self.displacement_features, self.angular_features):
            if group is not None:
                row.update(group)
        return pd.DataFrame([row]) if row else pd.DataFrame()


def disc_intensity_features(
    patches: np.ndarray, radii: dict[str, float], channel_names: list[str] | None = None
) -> pd.DataFrame:
    """Per-channel intensity statistics in discs centred on cell-centred patches, vectorised over a batch.

    A simple hand-made baseline for learned embeddings: mean, standard deviation, minimum, maximum and median of
    every channel inside discs of the given radii (e.g. a nucleus-sized and a cell-sized one), over all Z slices.

    Parameters
    ----------
    patches : numpy.ndarray
        ``(N, C, Z, Y, X)`` or ``(N, C, Y, X)`` patches, each centred on its cell.
    radii : dict of str to float
        Disc name -> radius in pixels, e.g. ``{"nucleus": 3.0, "cell": 7.0}``; a pixel belongs to the disc when
        its distance to the patch centre is at most the radius.
    channel_names : list of str, optional
        Column prefixes of the channels; default ``"ch0"``, ``"ch1"``, ...

    Returns
    -------
    pandas.DataFrame
        One row per patch, columns ``<channel>_<disc>_<statistic>`` (statistics in ``DISC_STATISTICS`` order).

    Raises
    ------
    ValueError
        If the patches are not 4-D or 5-D, the channel names do not match the channels, or a radius is not
        positive or its disc holds no pixel.
    """
    patches = np.asarray(patches)
    if patches.ndim == 4:
        patches = patches[:, :, None]
    if patches.ndim != 5:
        raise ValueError(f"patches must be (N, C, Z, Y, X) or (N, C, Y, X), got shape {patches.shape}")
    n, c, _, height, width = patches.shape
    channel_names = [f"ch{i}" for i in range(c)] if channel_names is None else list(channel_names)
    if len(channel_names) != c:
        raise ValueError(f"{len(channel_names)} channel names for {c} channels")
    yy, xx = np.mgrid[:height, :width]
    r2 = (yy - (height - 1) / 2) ** 2 + (xx - (width - 1) / 2) ** 2
    columns = {}
    for disc, radius in radii.items():
        mask = r2 <= radius**2
        if radius <= 0 or not mask.any():
            raise ValueError(f"disc {disc!r} of radius {radius} holds no pixel of a {height}x{width} patch")
        values = patches[..., mask].reshape(n, c, -1).astype(np.float64)  # (N, C, Z * pixels)
        stats = {
            "mean": values.mean(-1),
            "std": values.std(-1),
            "min": values.min(-1),
            "max": values.max(-1),
            "median": np.median(values, axis=-1),
        }
        for ch, name in enumerate(channel_names):
            for stat in DISC_STATISTICS:
                columns[f"{name}_{disc}_{stat}"] = stats[stat][:, ch]
    return pd.DataFrame(columns)
