"""Interactive Dash explorer of embeddings with cell image thumbnails (needs the ``[viz]`` extra).

Data preparation (loading embeddings, PCA, track filtering, image patches and their cache, cluster
export) lives in plain methods; only :meth:`EmbeddingVisualizationApp.run` builds the Dash UI.
"""

from __future__ import annotations

import base64
import io
import pickle
import socket
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from viscy_utils.evaluation._inputs import get_features, get_obs
from viscy_utils.evaluation._optional import require

__all__ = ["EmbeddingVisualizationApp"]

#: channels shown as their middle z-slice; every other channel is max-projected over z_range
PHASE_LIKE_CHANNELS = ("Phase3D", "DIC", "BF")
_PORTS = range(8050, 8071)
_REDUCTION_PREFIXES = ("UMAP", "PHATE", "PC")


def _load_embeddings(path: str | Path) -> Any:
    """Open an AnnData zarr store (has ``obs``/``obsm`` groups) or a legacy xarray store."""
    path = Path(path)
    if (path / "obs").exists():
        return require("anndata", "anndata", "EmbeddingVisualizationApp").read_zarr(path)
    import xarray as xr

    return xr.open_zarr(path)


def _reduction_columns(data: Any) -> pd.DataFrame:
    """Existing UMAP/PHATE/PCA coordinates as columns ``UMAP1, UMAP2, PHATE1, ..., PC1, ...``."""
    columns = {}
    if hasattr(data, "obsm"):
        for key, prefix in (("X_umap", "UMAP"), ("X_phate", "PHATE"), ("X_pca", "PC")):
            if key in data.obsm:
                matrix = np.asarray(data.obsm[key])
                columns.update({f"{prefix}{i + 1}": matrix[:, i] for i in range(matrix.shape[1])})
        return pd.DataFrame(columns)
    obs = get_obs(data)
    return obs[[c for c in obs.columns if c.upper().startswith(_REDUCTION_PREFIXES) and c[-1].isdigit()]]


class EmbeddingVisualizationApp:
    """Dash app exploring embeddings: scatter, track thumbnails, lasso clusters, CSV export.

    Parameters
    ----------
    data_path : str
        HCS OME-Zarr plate with the images.
    tracks_path : str
        Folder of the tracking results (kept for cache provenance).
    features_path : str
        Embedding store (AnnData zarr written by ``EmbeddingWriter`` or legacy xarray).
    channels_to_display : list of str or str
        Channels shown as thumbnails.
    fov_tracks : dict
        ``{fov_name: [track ids] | "all"}`` selecting the cells shown.
    z_range : tuple of int
        Z slices ``[start, stop)`` used for the thumbnails.
    yx_patch_size : tuple of int
        Thumbnail size in pixels.
    num_PC_components : int
        PCA components computed when the store has none.
    cache_path : str, optional
        Default pickle of the thumbnails.
    num_loading_workers : int
        Threads reading FOVs in :meth:`preload_images`.
    output_dir : str, optional
        Where cluster CSVs go (default: current directory).
    """

    def __init__(
        self,
        data_path: str,
        tracks_path: str,
        features_path: str,
        channels_to_display: list[str] | str,
        fov_tracks: dict[str, list[int] | Literal["all"]],
        z_range: tuple[int, int] = (0, 1),
        yx_patch_size: tuple[int, int] = (128, 128),
        num_PC_components: int = 3,  # noqa: N803 (public argument name)
        cache_path: str | None = None,
        num_loading_workers: int = 16,
        output_dir: str | None = None,
    ):
        for module in ("dash", "plotly", "PIL"):
            require(module, "viz", "EmbeddingVisualizationApp")
        self.data_path = str(data_path)
        self.tracks_path = str(tracks_path)
        self.features_path = str(features_path)
        self.channels_to_display = (
            [channels_to_display] if isinstance(channels_to_display, str) else list(channels_to_display)
        )
        self.fov_tracks = fov_tracks
        self.z_range = tuple(z_range)
        self.yx_patch_size = tuple(yx_patch_size)
        self.num_PC_components = num_PC_components
        self.cache_path = cache_path
        self.num_loading_workers = num_loading_workers
        self.output_dir = Path(output_dir) if output_dir is not None else Path.cwd()
        self.image_cache: dict[tuple[str, int, int], dict[str, str]] = {}
        self.clusters: list[dict[str, Any]] = []
        self.features_df = self._prepare_features()

    def _prepare_features(self) -> pd.DataFrame:
        data = _load_embeddings(self.features_path)
        obs = get_obs(data)
        frame = pd.concat([obs, _reduction_columns(data).reset_index(drop=True)], axis=1)
        if not any(c.startswith("PC") for c in frame.columns):
            decomposition = require("sklearn.decomposition", "eval", "EmbeddingVisualizationApp")
            preprocessing = require("sklearn.preprocessing", "eval", "EmbeddingVisualizationApp")
            features = preprocessing.StandardScaler().fit_transform(get_features(data))
            n = min(self.num_PC_components, *features.shape)
            pcs = decomposition.PCA(n_components=n, random_state=42).fit_transform(features)
            frame = frame.assign(**{f"PC{i + 1}": pcs[:, i] for i in range(n)})
        keep = np.zeros(len(frame), dtype=bool)
        fov = frame["fov_name"].astype(str).str.strip("/")
        for fov_name, track_ids in self.fov_tracks.items():
            in_fov = (fov == str(fov_name).strip("/")).to_numpy()
            keep |= in_fov if track_ids == "all" else in_fov & frame["track_id"].isin(track_ids).to_numpy()
        return frame[keep].reset_index(drop=True).assign(fov_name=fov[keep].to_numpy())

    @property
    def axis_options(self) -> list[str]:
        """Coordinate columns offered as scatter axes (PCs, UMAP, PHATE)."""
        return [c for c in self.features_df.columns if c.startswith(_REDUCTION_PREFIXES) and c[-1].isdigit()]

    def get_output_dir(self) -> Path:
        """Folder of exported files."""
        return self.output_dir

    def _cache_metadata(self) -> dict[str, Any]:
        return {
            "data_path": self.data_path,
            "tracks_path": self.tracks_path,
            "features_path": self.features_path,
            "channels": self.channels_to_display,
            "z_range": self.z_range,
            "yx_patch_size": self.yx_patch_size,
        }

    def _patches_for_fov(self, fov_name: str, cells: pd.DataFrame) -> dict[tuple[str, int, int], dict[str, str]]:
        """Thumbnails of all cells of one FOV, each time point read once."""
        from iohub.ngff import open_ome_zarr
        from PIL import Image

        out = {}
        half_y, half_x = self.yx_patch_size[0] // 2, self.yx_patch_size[1] // 2
        z0, z1 = self.z_range
        with open_ome_zarr(Path(self.data_path) / fov_name, mode="r") as position:
            names = list(position.channel_names)
            missing = [c for c in self.channels_to_display if c not in names]
            if missing:
                raise KeyError(f"channels {missing} not in {self.data_path}/{fov_name} (channels: {names})")
            channel_idx = [names.index(c) for c in self.channels_to_display]
            array = position["0"]
            for t, at_t in cells.groupby("t"):
                stack = np.asarray(array[int(t), channel_idx, z0:z1])  # (C, Z, Y, X)
                planes = [
                    stack[i, (z1 - z0) // 2] if name in PHASE_LIKE_CHANNELS else stack[i].max(axis=0)
                    for i, name in enumerate(self.channels_to_display)
                ]
                padded = np.pad(np.stack(planes), ((0, 0), (half_y, half_y), (half_x, half_x)), mode="constant")
                for track_id, y, x in at_t[["track_id", "y", "x"]].to_numpy():
                    yc, xc = int(round(y)) + half_y, int(round(x)) + half_x
                    crop = padded[:, yc - half_y : yc + half_y, xc - half_x : xc + half_x]
                    images = {}
                    for name, plane in zip(self.channels_to_display, crop, strict=True):
                        lo, hi = np.percentile(plane, [1, 99])
                        scaled = np.clip((plane - lo) / (hi - lo) if hi > lo else plane * 0, 0, 1)
                        buffer = io.BytesIO()
                        Image.fromarray((scaled * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=85)
                        images[name] = base64.b64encode(buffer.getvalue()).decode()
                    out[(fov_name, int(track_id), int(t))] = images
        return out

    def preload_images(self) -> None:
        """Read every selected cell's thumbnail into :attr:`image_cache` (one FOV per worker)."""
        from concurrent.futures import ThreadPoolExecutor

        missing = [c for c in ("y", "x", "t", "track_id") if c not in self.features_df.columns]
        if missing:
            raise KeyError(f"embedding metadata lacks {missing}; cannot locate cells in the images")
        groups = list(self.features_df.groupby("fov_name"))
        with ThreadPoolExecutor(max_workers=max(1, self.num_loading_workers)) as pool:
            for patches in pool.map(lambda item: self._patches_for_fov(*item), groups):
                self.image_cache.update(patches)

    def save_cache(self, cache_path: str | None = None) -> Path:
        """Pickle the thumbnails with the settings they were made with; return the path."""
        path = Path(cache_path or self.cache_path or self.output_dir / "embedding_app_cache.pkl")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            pickle.dump((self._cache_metadata(), self.image_cache), f)
        return path

    def load_cache(self, cache_path: str | None = None) -> bool:
        """Load thumbnails saved with identical settings; return whether the cache was used."""
        path = Path(cache_path or self.cache_path or self.output_dir / "embedding_app_cache.pkl")
        if not path.exists():
            return False
        with open(path, "rb") as f:
            metadata, cache = pickle.load(f)  # noqa: S301 (the app's own cache file)
        if metadata != self._cache_metadata():
            return False
        self.image_cache = cache
        return True

    def add_cluster(self, points: list[tuple[str, int, int]], name: str | None = None) -> None:
        """Record a named cluster of (fov_name, track_id, t) points (what a lasso selection adds)."""
        self.clusters.append({"name": name or f"Cluster {len(self.clusters) + 1}", "points": list(points)})

    def save_clusters_to_csv(self, output_path: str | None = None) -> str:
        """Write the clusters (cluster_id from 1, cluster_name, track_id, time, fov_name, cluster_size).

        Returns
        -------
        str
            The CSV path, or ``""`` when there are no clusters.
        """
        if not self.clusters:
            return ""
        rows = [
            (i + 1, cluster["name"], track_id, t, fov, len(cluster["points"]))
            for i, cluster in enumerate(self.clusters)
            for fov, track_id, t in cluster["points"]
        ]
        frame = pd.DataFrame(
            rows, columns=["cluster_id", "cluster_name", "track_id", "time", "fov_name", "cluster_size"]
        )
        path = Path(output_path) if output_path else self.output_dir / f"clusters_{datetime.now():%Y%m%d_%H%M%S}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
        return str(path)

    @staticmethod
    def _free_port(port: int | None) -> int:
        candidates = [port] if port is not None else list(_PORTS)
        for candidate in candidates:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind(("127.0.0.1", candidate))
                except OSError:
                    continue
                return candidate
        raise RuntimeError(f"No free port among {candidates[0]}-{candidates[-1]}")

    def _scatter(self, x: str, y: str, color: str) -> Any:
        import plotly.express as px

        figure = px.scatter(
            self.features_df,
            x=x,
            y=y,
            color=color if color in self.features_df.columns else None,
            custom_data=["fov_name", "track_id", "t"],
            render_mode="webgl",
        )
        figure.update_layout(dragmode="lasso", height=650)
        return figure

    def _timeline(self, fov_name: str, track_id: int) -> list[Any]:
        from dash import html

        track = self.features_df[
            (self.features_df["fov_name"] == fov_name) & (self.features_df["track_id"] == track_id)
        ]
        children = []
        for t in np.sort(track["t"].unique()):
            images = self.image_cache.get((fov_name, int(track_id), int(t)), {})
            thumbs = [
                html.Img(src=f"data:image/jpeg;base64,{b64}", title=name, style={"width": "96px"})
                for name, b64 in images.items()
            ]
            children.append(
                html.Div([html.Div(f"t={int(t)}"), *thumbs], style={"display": "inline-block", "margin": "2px"})
            )
        return children

    def run(self, debug: bool = False, port: int | None = None) -> None:
        """Build the Dash UI and serve it on the first free port of 8050-8070 (or ``port``)."""
        dash = require("dash", "viz", "EmbeddingVisualizationApp.run")
        from dash import Input, Output, State, dcc, html

        axes = self.axis_options
        color_options = [c for c in ("track_id", "t", "fov_name") if c in self.features_df.columns]
        app = dash.Dash(__name__)
        app.layout = html.Div(
            [
                html.Div(
                    [
                        dcc.Dropdown(axes, axes[0], id="x-axis", clearable=False),
                        dcc.Dropdown(axes, axes[1 % len(axes)], id="y-axis", clearable=False),
                        dcc.Dropdown(color_options, color_options[0] if color_options else None, id="color-by"),
                    ],
                    style={"display": "flex", "gap": "8px"},
                ),
                dcc.Graph(id="scatter"),
                html.Div(id="timeline"),
                dcc.Input(id="cluster-name", placeholder="cluster name"),
                html.Button("Add lasso selection as cluster", id="add-cluster"),
                html.Button("Export clusters to CSV", id="export"),
                html.Div(id="status"),
            ]
        )

        @app.callback(
            Output("scatter", "figure"), Input("x-axis", "value"), Input("y-axis", "value"), Input("color-by", "value")
        )
        def _update_scatter(x, y, color):
            return self._scatter(x, y, color)

        @app.callback(Output("timeline", "children"), Input("scatter", "clickData"))
        def _show_track(click):
            if not click:
                return []
            fov_name, track_id, _ = click["points"][0]["customdata"]
            return self._timeline(fov_name, int(track_id))

        @app.callback(
            Output("status", "children"),
            Input("add-cluster", "n_clicks"),
            Input("export", "n_clicks"),
            State("scatter", "selectedData"),
            State("cluster-name", "value"),
            prevent_initial_call=True,
        )
        def _clusters(_add, _export, selected, name):
            if dash.ctx.triggered_id == "export":
                path = self.save_clusters_to_csv()
                return f"Saved {path}" if path else "No clusters to save"
            if not selected or not selected.get("points"):
                return "Select points with the lasso first"
            points = [
                (p["customdata"][0], int(p["customdata"][1]), int(p["customdata"][2])) for p in selected["points"]
            ]
            self.add_cluster(points, name)
            return f"{len(self.clusters)} clusters"

        app.run(debug=debug, port=self._free_port(port))
