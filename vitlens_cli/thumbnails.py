"""A small PNG per item, whatever its modality: for result pages and reports (``vitlens eval`` can reuse it).

Point clouds and meshes are rendered with matplotlib (no OpenGL needed), coloured by their rgb or by
height along their up-axis; depth maps become colour maps; audio a log spectrogram; images themselves.
A file that cannot be rendered gets a placeholder that says why, so a page never has a broken image.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

SIZE = 192  # pixels per side
MAX_POINTS = 4096


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(SIZE / 96, SIZE / 96), dpi=96)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    return buf.getvalue()


def render_points(xyz: np.ndarray, rgb: np.ndarray | None = None, up_axis: str = "y", seed: int = 0) -> bytes:
    """A 3/4 view of a cloud ``(N, 3)``, the up-axis vertical."""
    xyz = np.asarray(xyz, dtype=np.float64)
    if len(xyz) > MAX_POINTS:
        keep = np.sort(np.random.default_rng(seed).choice(len(xyz), MAX_POINTS, replace=False))
        xyz = xyz[keep]
        rgb = None if rgb is None else np.asarray(rgb)[keep]
    # matplotlib's vertical axis is z: a y-up cloud is shown as (x, -z, y).
    x, y, z = (xyz[:, 0], -xyz[:, 2], xyz[:, 1]) if up_axis == "y" else (xyz[:, 0], xyz[:, 1], xyz[:, 2])
    centre = np.array([x.mean(), y.mean(), z.mean()])
    radius = float(np.max(np.abs(np.stack([x, y, z], 1) - centre))) or 1.0
    fig = _figure()
    ax = fig.add_axes((0, 0, 1, 1), projection="3d")
    colours = np.clip(rgb, 0, 1) if rgb is not None else None
    ax.scatter(x, y, z, s=1.5, c=colours if colours is not None else z, cmap=None if colours is not None else "viridis",
               linewidths=0, depthshade=True)
    for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre):
        setter(c - radius, c + radius)
    ax.set_box_aspect((1, 1, 1), zoom=1.35)  # matplotlib's default leaves a wide empty margin
    ax.view_init(elev=20, azim=-60)
    ax.set_axis_off()
    return _png(fig)


def render_array(values: np.ndarray, cmap: str = "turbo", *, positive_only: bool = True) -> bytes:
    """A 2-D array as a colour map; NaN (and, for depth, zero or negative: no reading) shown dark."""
    fig = _figure()
    ax = fig.add_axes((0, 0, 1, 1))
    data = np.asarray(values, dtype=np.float64)
    data = np.where(np.isfinite(data), data, np.nan)
    if positive_only:
        data = np.where(data > 0, data, np.nan)
    import matplotlib

    colours = matplotlib.colormaps[cmap].with_extremes(bad="black")
    ax.imshow(np.ma.masked_invalid(data), cmap=colours, aspect="auto")
    ax.set_axis_off()
    return _png(fig)


def render_audio(samples: np.ndarray, sample_rate: int) -> bytes:
    """A log-magnitude spectrogram of the first channel."""
    wave = np.asarray(samples, dtype=np.float64).reshape(-1, np.shape(samples)[-1])[0]
    fig = _figure()
    ax = fig.add_axes((0, 0, 1, 1))
    ax.specgram(wave, NFFT=512, Fs=sample_rate, noverlap=384, cmap="magma")
    ax.set_axis_off()
    return _png(fig)


def render_image(path: Path) -> bytes:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((SIZE, SIZE))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
    return buf.getvalue()


def render_rgb(rgb: np.ndarray) -> bytes:
    """An ``(H, W, 3)`` picture with values in [0, 1], fitted into the thumbnail size."""
    from PIL import Image

    img = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8), mode="RGB")
    img.thumbnail((SIZE, SIZE))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def placeholder(reason: str) -> bytes:
    """A grey tile with a short reason: an item without a preview still shows as an image."""
    import textwrap

    fig = _figure()
    fig.patch.set_facecolor("#dddddd")
    fig.text(0.5, 0.5, "\n".join(textwrap.wrap(reason, 22)[:5]), ha="center", va="center", fontsize=8,
             color="#444444")
    return _png(fig)


def thumbnail(path: str | Path, modality: str, item: str | None = None, *, up_axis: str = "y",
              mesh_points: int = 10_000, seed: int = 0) -> bytes:
    """PNG bytes for one item (``item`` picks a cloud of an ``.h5`` stack)."""
    path = Path(path)
    try:
        if modality == "3d":
            from .points import iter_clouds

            clouds = dict(iter_clouds(path, mesh_points=mesh_points, seed=seed))
            cloud = clouds.get(item) if item in clouds else next(iter(clouds.values()))
            return render_points(cloud.xyz, cloud.rgb, up_axis, seed)
        if modality in ("image", "tactile"):
            return render_image(path)
        from .modalities import get_modality

        raw = get_modality(modality).read(path)
        if modality == "depth":
            return render_array(raw.values)
        if modality == "audio":
            return render_audio(np.asarray(raw.samples), int(raw.sample_rate))
        values = np.asarray(getattr(raw, "values", raw), dtype=np.float64)
        return render_array(values if values.ndim == 2 else values.reshape(1, -1), cmap="viridis", positive_only=False)
    except Exception as exc:  # noqa: BLE001 - a preview must never take the page down with it
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        reason = getattr(exc, "reason", None) or text
        return placeholder(f"no preview: {reason}")


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
