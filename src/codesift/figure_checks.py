"""What a person would notice in a figure, checked by code: tick labels that run into each other, a
panel with nothing in it, a legend over the data, a title that promises intervals the figure does
not draw. The tests render every figure the kit writes and call `figure_problems` on it.

Every check works on the drawn figure (`fig.canvas.draw()` first), in display coordinates at the
figure's own size and dpi, so it sees what the saved PNG shows.
"""

from __future__ import annotations

import re

import numpy as np
from matplotlib.collections import Collection, LineCollection, PolyCollection
from matplotlib.image import AxesImage
from matplotlib.patches import Polygon, Rectangle

# "mean and 95% CI", "with its interval": a promise of drawn intervals ("no interval" is not one)
INTERVAL_CLAIM = re.compile(r"(?<!no )\b(CI|interval|intervals|confidence)\b", re.IGNORECASE)


def figure_problems(fig, dpi: float = 120) -> list[str]:
    """Every problem found, one line each (empty: the figure passes)."""
    fig.set_dpi(dpi)  # the dpi the kit saves at: label sizes in pixels as in the PNG
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    for index, ax in enumerate(data_axes(fig)):
        name = ax.get_title() or f"panel {index}"
        problems += [f"{name}: {p}" for p in overlapping_tick_labels(ax, renderer)]
        problems += [f"{name}: {p}" for p in labels_over_other_panels(ax, fig, renderer)]
        if not has_data(ax):
            problems.append(f"{name}: the panel is empty")
        covered = legend_covered_points(ax, renderer)
        if covered:
            problems.append(f"{name}: the legend covers {covered} data point(s)")
    problems += overlapping_titles(fig, renderer)
    problems += unshown_interval_claims(fig)
    return problems


def overlapping_titles(fig, renderer) -> list[str]:
    """Panel titles (and the figure's title) whose boxes run into each other."""
    titles = [ax.title for ax in data_axes(fig) if ax.title.get_text().strip()]
    if fig._suptitle is not None and fig._suptitle.get_text().strip():
        titles.append(fig._suptitle)
    boxes = [(t.get_text(), text_corners(t, renderer)) for t in titles]
    return [
        f"titles {a!r} and {b!r} overlap"
        for i, (a, box_a) in enumerate(boxes)
        for b, box_b in boxes[i + 1 :]
        if rectangles_overlap(box_a, box_b)
    ]


def data_axes(fig) -> list:
    """The panels that hold data (not colorbars)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.get_visible()]


def overlapping_tick_labels(ax, renderer) -> list[str]:
    """Pairs of visible tick labels on one axis whose drawn text overlaps (rotated labels compared
    as the rotated rectangles they are, not their upright bounding boxes)."""
    problems = []
    for axis_name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
        labels = [  # minor labels too: a log axis labels 2x10^2, 3x10^2 ... between the decades
            label
            for label in axis.get_ticklabels(which="both")
            if label.get_visible() and label.get_text().strip()
        ]
        corners = [text_corners(label, renderer) for label in labels]
        for i in range(len(labels)):
            for j in range(i + 1, len(labels)):
                if rectangles_overlap(corners[i], corners[j]):
                    problems.append(
                        f"{axis_name} tick labels {labels[i].get_text()!r} and {labels[j].get_text()!r} overlap"
                    )
    return problems


def labels_over_other_panels(ax, fig, renderer) -> list[str]:
    """Tick labels (and axis labels) of `ax` that run into another panel's plotting area."""
    others = [other.get_window_extent(renderer) for other in data_axes(fig) if other is not ax]
    texts = [t for axis in (ax.xaxis, ax.yaxis) for t in [*axis.get_ticklabels(), axis.label]]
    problems = []
    for text in texts:
        if not (text.get_visible() and text.get_text().strip()):
            continue
        box = text.get_window_extent(renderer)
        for other in others:
            if (
                box.overlaps(other)
                and min(box.x1, other.x1) - max(box.x0, other.x0) > 1
                and (min(box.y1, other.y1) - max(box.y0, other.y0) > 1)
            ):
                problems.append(f"the label {text.get_text()!r} runs into another panel")
                break
    return problems


def text_corners(text, renderer) -> np.ndarray:
    """The four corners of a text's rotated box, in pixels: its upright size, rotated about the
    centre of its bounding box (which rotation leaves in place)."""
    box = text.get_window_extent(renderer)
    angle = text.get_rotation()
    text.set_rotation(0)
    upright = text.get_window_extent(renderer)
    text.set_rotation(angle)
    theta = np.deg2rad(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [upright.width / 2, upright.height / 2]
    return half @ rotation.T + [(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2]


def rectangles_overlap(a: np.ndarray, b: np.ndarray, tolerance: float = 1.0) -> bool:
    """Separating-axis test for two convex quadrilaterals; a gap under `tolerance` pixels of
    overlap (touching edges) does not count."""
    for quad in (a, b):
        for k in range(4):
            edge = quad[(k + 1) % 4] - quad[k]
            normal = np.array([-edge[1], edge[0]]) / (np.hypot(*edge) or 1.0)
            pa, pb = a @ normal, b @ normal
            if min(pa.max(), pb.max()) - max(pa.min(), pb.min()) <= tolerance:
                return False
    return True


def has_data(ax) -> bool:
    """Anything drawn from data: a line with points, a bar, a scatter, an image, or a text in the axes."""
    lines = any(len(line.get_xdata()) > 0 for line in ax.get_lines() if not _is_reference_line(ax, line))
    bars = any(
        (isinstance(p, Rectangle) and p.get_width() != 0) or (isinstance(p, Polygon) and len(p.get_xy()) > 2)
        for p in ax.patches
    )  # bars, and histograms drawn as steps
    collections = any(_collection_points(c).size > 0 for c in ax.collections)
    images = any(isinstance(image, AxesImage) for image in ax.images)
    return lines or bars or collections or images or bool(ax.texts)


def _is_reference_line(ax, line) -> bool:
    """axhline/axvline: a zero line alone is no data."""
    return line.get_transform() in (ax.get_xaxis_transform(), ax.get_yaxis_transform())


def _collection_points(collection: Collection) -> np.ndarray:
    if isinstance(collection, LineCollection):
        segments = collection.get_segments()
        return np.concatenate(segments) if segments else np.empty((0, 2))
    offsets = collection.get_offsets()
    return np.asarray(offsets) if len(offsets) else np.empty((0, 2))


def data_points(ax) -> np.ndarray:
    """The data as display coordinates: line vertices, scatter offsets, bar ends."""
    points = []
    for line in ax.get_lines():
        if _is_reference_line(ax, line):
            continue
        xy = np.asarray(line.get_xydata(), dtype=float)
        if xy.size:
            points.append(line.get_transform().transform(xy))
    for collection in ax.collections:
        xy = _collection_points(collection)
        if xy.size:
            points.append(ax.transData.transform(xy))
    for patch in ax.patches:
        if isinstance(patch, Polygon):  # a step histogram: its outline
            points.append(patch.get_data_transform().transform(np.asarray(patch.get_xy(), dtype=float)))
        elif isinstance(patch, Rectangle) and patch.get_width() != 0 and patch.get_height() != 0:
            x, y, w, h = patch.get_x(), patch.get_y(), patch.get_width(), patch.get_height()
            ends = np.array([[x + w, y + h / 2], [x + w / 2, y + h]])
            points.append(patch.get_data_transform().transform(ends))
    points = [p[np.isfinite(p).all(axis=1)] for p in points]
    return np.concatenate(points) if points else np.empty((0, 2))


def legend_covered_points(ax, renderer) -> int:
    """How many data points lie under the axes' legend (0 when it has none or sits outside)."""
    legend = ax.get_legend()
    if legend is None or not legend.get_visible():
        return 0
    box = legend.get_window_extent(renderer)
    points = data_points(ax)
    inside = (
        (points[:, 0] > box.x0) & (points[:, 0] < box.x1) & (points[:, 1] > box.y0) & (points[:, 1] < box.y1)
    )
    return int(inside.sum())


def unshown_interval_claims(fig) -> list[str]:
    """A title that promises intervals where no panel draws any (error bars or interval segments
    of non-zero length: bars drawn with xerr=0 show no interval)."""
    titles = [ax.get_title() for ax in fig.axes] + ([fig._suptitle.get_text()] if fig._suptitle else [])
    claims = [t for t in titles if t and INTERVAL_CLAIM.search(t)]
    if not claims or any(_interval_drawn(ax) for ax in fig.axes):
        return []
    return [f"the title {claims[0]!r} promises intervals, and none is drawn"]


def _interval_drawn(ax) -> bool:
    """Error bars, or intervals drawn as two-point lines (plot_effect_intervals' style)."""
    two_point = [
        line for line in ax.get_lines() if len(line.get_xdata()) == 2 and not _is_reference_line(ax, line)
    ]
    spans = [np.ptp(np.asarray(line.get_xydata(), dtype=float), axis=0).max() for line in two_point]
    bands = any(isinstance(c, PolyCollection) and len(c.get_paths()) for c in ax.collections)  # fill_between
    return any(span > 0 for span in spans) or bands or any(_nonzero_segments(c) for c in ax.collections)


def _nonzero_segments(collection) -> bool:
    return isinstance(collection, LineCollection) and any(
        np.ptp(np.asarray(segment, dtype=float), axis=0).max() > 0 for segment in collection.get_segments()
    )
