"""The built-in synthetic source: dermoscopy-like images with HAM10000's class shares.

Each lesion is sampled once (a dict of shape, colour and texture parameters drawn from
class-dependent ranges that overlap between classes) and rendered 1-4 times with small
variations (rotation, shift, zoom, lighting, hairs, dermoscope vignette), like HAM10000
(about 1.34 images per lesion). Some lesions are *look-alikes*: their parameters are
blended with those of a lesion drawn from a confusable class (a nevus that looks like a
melanoma, a keratosis that looks like an actinic keratosis, ...). Labels are never
noisy, but such lesions are ambiguous, so the classes overlap and a small CNN does not
reach 100% accuracy.

Visual signatures (dermoscopy vocabulary, simplified):

- ``nv``: small, round, symmetric, one or two browns, regular network or globules.
- ``mel``: large, asymmetric, irregular border, several colours (light/dark brown,
  black, blue-white veil, white regression, red), atypical network, peripheral
  dots and streaks.
- ``bkl``: tan to brown, sharp border, fissures and ridges, rough scaly surface,
  milia-like cysts (white dots) and comedo-like openings (dark dots).
- ``bcc``: pink, translucent, arborizing red vessels, blue-grey ovoid nests.
- ``akiec``: pink-red, scaly/rough white surface, red pseudo-network, dotted vessels.
- ``df``: small, light brown, fine peripheral network, central white patch.
- ``vasc``: red/purple lacunae separated by pale septa.

Rendering is vectorised with numpy on a coordinate grid at the requested size (value
noise, a polar border function, a hexagonal pigment network faded out where it would
alias), plus Pillow drawing for dots, globules, lacunae, vessels and hairs at twice the
size, box-filtered down (anti-aliasing). Every random draw is independent of the image
size, so a seed gives the same lesions at every size. Same seed: byte-identical arrays.
About 3-4 ms per 64 px image on one core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from skinlib.errors import SkinlibError
from skinlib.labels import CLASSES

#: Default number of images.
DEFAULT_N_IMAGES = 3000

#: HAM10000 image counts per class (Tschandl et al. 2018), in CLASSES order.
HAM10000_COUNTS: dict[str, int] = {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115,
                                   "mel": 1113, "nv": 6705, "vasc": 142}
#: Target share of images per class.
CLASS_SHARES: dict[str, float] = {c: n / sum(HAM10000_COUNTS.values()) for c, n in HAM10000_COUNTS.items()}

#: Probability of 1, 2, 3, 4 images per lesion (mean about 1.35, as in HAM10000).
IMAGES_PER_LESION_P = np.array([0.77, 0.14, 0.06, 0.03])

#: Per class: (look-alike class, probability). A look-alike lesion's parameters are a
#: blend of its own and those of a lesion of the other class (blend weight in
#: ``LOOKALIKE_BLEND``), which makes it ambiguous without mislabelling it.
LOOKALIKES: dict[str, tuple[tuple[str, float], ...]] = {
    "nv": (("mel", 0.10), ("bkl", 0.07), ("df", 0.02)),
    "mel": (("nv", 0.16), ("bkl", 0.10)),
    "bkl": (("mel", 0.10), ("nv", 0.09), ("akiec", 0.08)),
    "bcc": (("akiec", 0.10), ("nv", 0.07), ("mel", 0.05)),
    "akiec": (("bkl", 0.14), ("bcc", 0.08)),
    "df": (("nv", 0.14), ("bkl", 0.05)),
    "vasc": (("bcc", 0.05), ("mel", 0.05), ("nv", 0.04)),
}
LOOKALIKE_BLEND = (0.3, 0.8)

# Colours (RGB, 0..1).
_C = {
    "tan": (0.80, 0.63, 0.46), "light_brown": (0.70, 0.49, 0.34), "mid_brown": (0.53, 0.33, 0.21),
    "dark_brown": (0.34, 0.20, 0.13), "black": (0.13, 0.09, 0.09), "blue_grey": (0.42, 0.46, 0.56),
    "blue_white": (0.64, 0.70, 0.80), "pink": (0.88, 0.60, 0.60), "pearly": (0.93, 0.78, 0.78),
    "red": (0.78, 0.22, 0.26), "dark_red": (0.50, 0.11, 0.16), "purple": (0.46, 0.19, 0.36),
    "white": (0.94, 0.91, 0.88), "yellowish": (0.86, 0.74, 0.58), "pink_red": (0.83, 0.45, 0.44),
}
_SKIN = np.array([(0.95, 0.80, 0.72), (0.90, 0.72, 0.62), (0.82, 0.62, 0.48), (0.64, 0.45, 0.33)],
                 dtype=np.float32)
_HAIR = np.array([(0.10, 0.07, 0.06), (0.22, 0.15, 0.10), (0.45, 0.33, 0.22)], dtype=np.float32)

# Scalar parameters: per class a (low, high) uniform range. Ranges overlap on purpose.
_SCALARS = ("radius", "elong", "irregularity", "asym", "softness", "alpha", "mix_second",
            "mix_third", "center_dark", "net_strength", "net_freq", "net_warp", "dots_n",
            "dots_strength", "dots_periph", "milia_n", "nests_n", "streaks_n", "vessels_arbor",
            "vessels_dotted", "white_patch", "lacunae_n", "lacunae_strength", "scale",
            "ridges", "erythema")
_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "nv": dict(radius=(0.30, 0.62), elong=(1.0, 1.35), irregularity=(0.0, 0.07), asym=(0.0, 0.08),
               softness=(0.05, 0.16), alpha=(0.55, 0.95), mix_second=(0.0, 0.5), mix_third=(0.0, 0.08),
               center_dark=(-0.05, 0.35), net_strength=(0.0, 0.55), net_freq=(38, 55), net_warp=(0.0, 0.05),
               dots_n=(0, 14), dots_strength=(0.2, 0.7), dots_periph=(0.0, 0.35), milia_n=(0, 1),
               nests_n=(0, 0.5), streaks_n=(0, 1.5), vessels_arbor=(0.0, 0.05), vessels_dotted=(0.0, 0.05),
               white_patch=(0.0, 0.06), lacunae_n=(0, 0), lacunae_strength=(0.0, 0.0), scale=(0.0, 0.08),
               ridges=(0.0, 0.1), erythema=(0.0, 0.12)),
    "mel": dict(radius=(0.48, 0.85), elong=(1.0, 1.6), irregularity=(0.06, 0.22), asym=(0.06, 0.25),
                softness=(0.03, 0.14), alpha=(0.7, 0.98), mix_second=(0.3, 0.85), mix_third=(0.25, 0.8),
                center_dark=(-0.2, 0.3), net_strength=(0.2, 0.65), net_freq=(26, 46), net_warp=(0.05, 0.16),
                dots_n=(6, 30), dots_strength=(0.5, 0.9), dots_periph=(0.4, 1.0), milia_n=(0, 1),
                nests_n=(0, 1), streaks_n=(0, 12), vessels_arbor=(0.0, 0.15), vessels_dotted=(0.0, 0.3),
                white_patch=(0.0, 0.35), lacunae_n=(0, 0), lacunae_strength=(0.0, 0.0), scale=(0.0, 0.15),
                ridges=(0.0, 0.15), erythema=(0.0, 0.3)),
    "bkl": dict(radius=(0.36, 0.75), elong=(1.0, 1.6), irregularity=(0.03, 0.14), asym=(0.0, 0.15),
                softness=(0.02, 0.07), alpha=(0.55, 0.9), mix_second=(0.1, 0.6), mix_third=(0.0, 0.3),
                center_dark=(-0.15, 0.15), net_strength=(0.0, 0.3), net_freq=(34, 50), net_warp=(0.02, 0.1),
                dots_n=(0, 10), dots_strength=(0.3, 0.8), dots_periph=(0.0, 0.6), milia_n=(2, 12),
                nests_n=(0, 0.5), streaks_n=(0, 1), vessels_arbor=(0.0, 0.1), vessels_dotted=(0.0, 0.15),
                white_patch=(0.0, 0.15), lacunae_n=(0, 0), lacunae_strength=(0.0, 0.0), scale=(0.15, 0.55),
                ridges=(0.25, 0.8), erythema=(0.0, 0.2)),
    "bcc": dict(radius=(0.34, 0.66), elong=(1.0, 1.5), irregularity=(0.03, 0.14), asym=(0.02, 0.15),
                softness=(0.06, 0.18), alpha=(0.45, 0.85), mix_second=(0.2, 0.7), mix_third=(0.1, 0.5),
                center_dark=(-0.15, 0.1), net_strength=(0.0, 0.08), net_freq=(30, 45), net_warp=(0.05, 0.1),
                dots_n=(0, 4), dots_strength=(0.2, 0.6), dots_periph=(0.0, 0.6), milia_n=(0, 2),
                nests_n=(2, 8), streaks_n=(0, 1), vessels_arbor=(0.55, 1.0), vessels_dotted=(0.0, 0.2),
                white_patch=(0.0, 0.3), lacunae_n=(0, 0), lacunae_strength=(0.0, 0.0), scale=(0.0, 0.15),
                ridges=(0.0, 0.1), erythema=(0.1, 0.45)),
    "akiec": dict(radius=(0.38, 0.70), elong=(1.0, 1.5), irregularity=(0.04, 0.15), asym=(0.02, 0.15),
                  softness=(0.08, 0.2), alpha=(0.45, 0.85), mix_second=(0.1, 0.5), mix_third=(0.0, 0.3),
                  center_dark=(-0.1, 0.1), net_strength=(0.2, 0.55), net_freq=(24, 36), net_warp=(0.05, 0.12),
                  dots_n=(0, 4), dots_strength=(0.2, 0.6), dots_periph=(0.0, 0.6), milia_n=(0, 3),
                  nests_n=(0, 0.5), streaks_n=(0, 1), vessels_arbor=(0.0, 0.2), vessels_dotted=(0.3, 0.8),
                  white_patch=(0.0, 0.2), lacunae_n=(0, 0), lacunae_strength=(0.0, 0.0), scale=(0.45, 0.9),
                  ridges=(0.0, 0.3), erythema=(0.25, 0.6)),
    "df": dict(radius=(0.26, 0.48), elong=(1.0, 1.35), irregularity=(0.01, 0.07), asym=(0.0, 0.08),
               softness=(0.08, 0.2), alpha=(0.45, 0.8), mix_second=(0.1, 0.5), mix_third=(0.0, 0.1),
               center_dark=(-0.3, -0.05), net_strength=(0.3, 0.6), net_freq=(42, 60), net_warp=(0.0, 0.06),
               dots_n=(0, 4), dots_strength=(0.2, 0.5), dots_periph=(0.3, 0.9), milia_n=(0, 1),
               nests_n=(0, 0.5), streaks_n=(0, 1), vessels_arbor=(0.0, 0.05), vessels_dotted=(0.0, 0.2),
               white_patch=(0.55, 0.95), lacunae_n=(0, 0), lacunae_strength=(0.0, 0.0), scale=(0.0, 0.15),
               ridges=(0.0, 0.1), erythema=(0.05, 0.35)),
    "vasc": dict(radius=(0.28, 0.58), elong=(1.0, 1.4), irregularity=(0.02, 0.1), asym=(0.0, 0.1),
                 softness=(0.04, 0.12), alpha=(0.8, 1.0), mix_second=(0.1, 0.4), mix_third=(0.1, 0.4),
                 center_dark=(-0.1, 0.2), net_strength=(0.0, 0.05), net_freq=(30, 45), net_warp=(0.0, 0.05),
                 dots_n=(0, 3), dots_strength=(0.2, 0.5), dots_periph=(0.0, 0.5), milia_n=(0, 1),
                 nests_n=(0, 0.5), streaks_n=(0, 0.5), vessels_arbor=(0.0, 0.1), vessels_dotted=(0.0, 0.2),
                 white_patch=(0.0, 0.2), lacunae_n=(6, 22), lacunae_strength=(0.6, 1.0), scale=(0.0, 0.08),
                 ridges=(0.0, 0.05), erythema=(0.1, 0.4)),
}
# Colour slots: per class the candidate colours of each slot.
_COLOUR_SLOTS = ("main", "second", "third", "dots", "net")
_PALETTES: dict[str, dict[str, tuple[str, ...]]] = {
    "nv": dict(main=("light_brown", "mid_brown", "mid_brown", "dark_brown", "tan"),
               second=("light_brown", "mid_brown", "tan", "dark_brown"), third=("dark_brown", "pink"),
               dots=("mid_brown", "dark_brown"), net=("dark_brown", "mid_brown")),
    "mel": dict(main=("mid_brown", "dark_brown", "dark_brown", "light_brown"),
                second=("black", "light_brown", "dark_brown", "tan"),
                third=("blue_white", "blue_grey", "black", "white", "red", "pink"),
                dots=("black", "dark_brown", "blue_grey"), net=("black", "dark_brown")),
    "bkl": dict(main=("tan", "light_brown", "mid_brown", "yellowish"),
                second=("mid_brown", "dark_brown", "tan", "yellowish"), third=("dark_brown", "white", "yellowish"),
                dots=("dark_brown", "black"), net=("mid_brown", "dark_brown")),
    "bcc": dict(main=("pink", "pearly", "pink_red"), second=("pearly", "white", "pink"),
                third=("blue_grey", "dark_red", "mid_brown"), dots=("blue_grey", "dark_brown"),
                net=("mid_brown",)),
    "akiec": dict(main=("pink_red", "pink", "pink_red"), second=("light_brown", "pink", "tan"),
                  third=("white", "mid_brown", "red"), dots=("mid_brown", "dark_red"), net=("red", "pink_red")),
    "df": dict(main=("light_brown", "tan", "mid_brown"), second=("pink", "tan", "light_brown"),
               third=("mid_brown", "pink"), dots=("mid_brown",), net=("mid_brown", "dark_brown")),
    "vasc": dict(main=("red", "dark_red", "purple"), second=("pink", "pearly"),
                 third=("purple", "dark_red", "blue_grey"), dots=("dark_red", "purple"), net=("dark_red",)),
}

# Capacities of the geometric sub-structures (candidates drawn once; the scalar counts
# pick how many are used, so blending two lesions blends counts smoothly).
_MAX = dict(dots=40, milia=16, nests=10, streaks=16, lacunae=30, dotted=40, harmonics=8, trunks=4)
_NOISE_COARSE = 7  # grid of the colour-mixing noise
_NOISE_FINE = 26  # grid of the texture noise
_NOISE_EXTENT = 1.6  # lesion-frame half-width covered by the noise grids
_BORDER_TABLE = 256  # samples of the border radius function


@dataclass
class _Lesion:
    """One lesion: its class, blended parameters and drawn sub-structures."""

    label: int
    p: dict[str, float]
    colours: dict[str, np.ndarray]
    harmonics: np.ndarray  # (H, 2): amplitude weights and phases, k = 2..H+1
    asym_phase: float
    colour_dir: float
    skin: np.ndarray
    hairiness: float
    coarse: np.ndarray  # (g, g, 3) noise
    fine: np.ndarray  # (g, g, 3) noise
    subs: dict[str, np.ndarray] = field(default_factory=dict)
    vessels: list[np.ndarray] = field(default_factory=list)  # polylines (n, 2), lesion frame / radius
    base_angle: float = 0.0


def _sample_params(rng: np.random.Generator, cls: str) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Scalar parameters and colours of a lesion of class ``cls``."""
    ranges = _RANGES[cls]
    p = {k: float(rng.uniform(*ranges[k])) for k in _SCALARS}
    colours = {}
    for slot in _COLOUR_SLOTS:
        names = _PALETTES[cls][slot]
        base = np.array(_C[names[int(rng.integers(len(names)))]], dtype=np.float32)
        colours[slot] = np.clip(base + rng.normal(0.0, 0.035, 3).astype(np.float32), 0.0, 1.0)
    return p, colours


def _sample_lesion(rng: np.random.Generator, label: int) -> _Lesion:
    """Draw one lesion of class index ``label`` (possibly a look-alike of another class)."""
    cls = CLASSES[label]
    p, colours = _sample_params(rng, cls)
    # Look-alike: blend with a lesion of a confusable class.
    u = rng.random()
    acc = 0.0
    for other, prob in LOOKALIKES[cls]:
        acc += prob
        if u < acc:
            t = float(rng.uniform(*LOOKALIKE_BLEND))
            q, qc = _sample_params(rng, other)
            p = {k: (1 - t) * p[k] + t * q[k] for k in p}
            colours = {k: (1 - t) * colours[k] + t * qc[k] for k in colours}
            break
    h = _MAX["harmonics"]
    harmonics = np.stack([rng.uniform(0.3, 1.0, h) / np.arange(2, h + 2) ** 0.7,
                          rng.uniform(0, 2 * np.pi, h)], axis=1)
    skin_t = rng.beta(1.6, 2.4) * (len(_SKIN) - 1)
    i = min(int(skin_t), len(_SKIN) - 2)
    skin = (1 - (skin_t - i)) * _SKIN[i] + (skin_t - i) * _SKIN[i + 1]
    skin = np.clip(skin + rng.normal(0, 0.02, 3), 0, 1).astype(np.float32)
    les = _Lesion(
        label=label, p=p, colours=colours, harmonics=harmonics.astype(np.float32),
        asym_phase=float(rng.uniform(0, 2 * np.pi)), colour_dir=float(rng.uniform(0, 2 * np.pi)),
        skin=skin, hairiness=float(rng.exponential(1.8)),
        coarse=rng.random((_NOISE_COARSE, _NOISE_COARSE, 3)).astype(np.float32),
        fine=rng.random((_NOISE_FINE, _NOISE_FINE, 3)).astype(np.float32),
        base_angle=float(rng.uniform(0, 2 * np.pi)),
    )
    # Sub-structures: columns (r-uniform, periphery-uniform, phi, size, colour jitter).
    for name in ("dots", "milia", "nests", "streaks", "lacunae", "dotted"):
        les.subs[name] = rng.random((_MAX[name], 5)).astype(np.float32)
    # Arborizing vessel tree: trunks that fork, in the lesion frame, unit = lesion radius.
    for _ in range(_MAX["trunks"]):
        r0 = rng.uniform(0.1, 0.7)
        a0 = rng.uniform(0, 2 * np.pi)
        pos = np.array([r0 * np.cos(a0), r0 * np.sin(a0)])
        heading = rng.uniform(0, 2 * np.pi)
        pts = [pos.copy()]
        for _ in range(5):
            heading += rng.normal(0, 0.5)
            pos = pos + rng.uniform(0.1, 0.22) * np.array([np.cos(heading), np.sin(heading)])
            pts.append(pos.copy())
            if rng.random() < 0.5:  # a short branch
                bh = heading + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)
                b1 = pos + rng.uniform(0.08, 0.18) * np.array([np.cos(bh), np.sin(bh)])
                bh += rng.normal(0, 0.4)
                b2 = b1 + rng.uniform(0.05, 0.12) * np.array([np.cos(bh), np.sin(bh)])
                les.vessels.append(np.stack([pos, b1, b2]).astype(np.float32))
        les.vessels.insert(0, np.stack(pts).astype(np.float32))
    return les


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``e0`` to 1 at ``e1`` (``e1 < e0`` gives a falling step)."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _noise(grid: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear value noise: ``grid`` (g, g, k) sampled at lesion-frame ``u, v`` -> (..., k)."""
    g = grid.shape[0]
    scale = (g - 1) / (2 * _NOISE_EXTENT)
    fx = np.clip((u + _NOISE_EXTENT) * scale, 0, g - 1.001)
    fy = np.clip((v + _NOISE_EXTENT) * scale, 0, g - 1.001)
    ix = fx.astype(np.int32)
    iy = fy.astype(np.int32)
    tx = fx - ix
    ty = fy - iy
    tx = (tx * tx * (3 - 2 * tx))[..., None]
    ty = (ty * ty * (3 - 2 * ty))[..., None]
    flat = grid.reshape(g * g, -1)
    idx = iy * g + ix
    a, b, c, d = flat[idx], flat[idx + 1], flat[idx + g], flat[idx + g + 1]
    top = a + (b - a) * tx
    return top + (c + (d - c) * tx - top) * ty


class _Renderer:
    """Renders lesions at ``size`` px (drawn layers supersampled ``ss`` times)."""

    def __init__(self, size: int):
        self.size = size
        self.ss = 2 if size <= 128 else 1
        self.res = size  # numpy grid: smooth fields need no supersampling
        self.draw_res = size * self.ss  # Pillow drawing: supersampled, then box-filtered
        c = (np.arange(self.res, dtype=np.float32) + 0.5) / self.res * 2 - 1
        self.y, self.x = np.meshgrid(c, c, indexing="ij")
        self.r_img = np.hypot(self.x, self.y)
        self.angles = np.linspace(-np.pi, np.pi, _BORDER_TABLE + 1, dtype=np.float32)

    def _px(self, xy: np.ndarray) -> np.ndarray:
        """Image-frame coordinates (-1..1) to pixel coordinates."""
        return (xy + 1.0) * (self.draw_res / 2.0)

    def render(self, les: _Lesion, rng: np.random.Generator, noise_rng: np.random.Generator) -> np.ndarray:
        """One image of ``les``: (size, size, 3) uint8."""
        p, col = les.p, les.colours
        R = self.res
        # Per-image variation: rotation, shift, zoom.
        angle = les.base_angle + rng.normal(0, 0.35)
        shift = rng.normal(0, 0.06, 2)
        zoom = rng.uniform(0.88, 1.12)
        ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        dx, dy = self.x - np.float32(shift[0]), self.y - np.float32(shift[1])
        u = (ca * dx + sa * dy) / np.float32(zoom)
        v = (-sa * dx + ca * dy) / np.float32(zoom)
        se = np.float32(np.sqrt(p["elong"]))
        ue, ve = u / se, v * se
        r = np.hypot(ue, ve)
        phi = np.arctan2(ve, ue)

        # Border radius as a function of angle: asymmetry (k=1) plus irregular harmonics.
        k = np.arange(2, _MAX["harmonics"] + 2, dtype=np.float32)[:, None]
        h = les.harmonics
        table = (1 + p["asym"] * np.cos(self.angles - les.asym_phase)
                 + p["irregularity"] * (h[:, :1] * np.cos(k * self.angles + h[:, 1:])).sum(0))
        table = np.maximum(table, 0.35) * p["radius"]
        rb = np.interp(phi, self.angles, table).astype(np.float32)

        nc = _noise(les.coarse, u, v)
        nf = _noise(les.fine, u, v)
        d = r / rb + (nf[..., 0] - 0.5) * (0.08 + 0.3 * p["irregularity"])
        soft = p["softness"]
        mask = _smoothstep(1 + soft, 1 - soft, d)

        # Lesion colour.
        lcol = np.broadcast_to(col["main"], (R, R, 3)).astype(np.float32)
        cdir = np.cos(les.colour_dir) * ue + np.sin(les.colour_dir) * ve
        w2 = p["mix_second"] * np.clip(0.5 + 1.6 * (nc[..., 0] - 0.5) + 2.0 * p["asym"] * cdir / p["radius"], 0, 1)
        lcol = lcol + (col["second"] - lcol) * w2[..., None]
        w3 = p["mix_third"] * _smoothstep(0.5, 0.72, nc[..., 1] + 0.6 * p["asym"] * cdir / p["radius"])
        lcol = lcol + (col["third"] - lcol) * w3[..., None]
        centre = np.clip(1 - d, 0, 1) ** 2
        lcol = lcol * (1 - p["center_dark"] * centre)[..., None]
        if p["net_strength"] > 0.02:
            f = p["net_freq"]
            wu = u + p["net_warp"] * (nf[..., 1] - 0.5) * 6
            wv = v + p["net_warp"] * (nf[..., 2] - 0.5) * 6
            hexv = (np.cos(f * wu) + np.cos(f * (-0.5 * wu + 0.866 * wv)) + np.cos(f * (-0.5 * wu - 0.866 * wv)))
            net = _smoothstep(0.2, -1.2, hexv) * _smoothstep(1.05, 0.6, d)
            period_px = 2 * np.pi / f * zoom * R / 2
            fade = float(np.clip((period_px - 2.5) / 3.0, 0.0, 1.0))  # no aliasing at tiny sizes
            lcol = lcol + (col["net"] - lcol) * (fade * p["net_strength"] * net)[..., None]
        if p["scale"] > 0.02:
            rough = nf[..., 2] * 0.6 + nf[..., 1] * 0.4
            lcol = lcol * (1 + 0.3 * p["scale"] * (rough - 0.5))[..., None]
            flakes = p["scale"] * _smoothstep(0.52, 0.75, rough)
            lcol = lcol + (np.float32(_C["yellowish"]) * 1.08 - lcol) * flakes[..., None]
        if p["ridges"] > 0.02:
            ridge = np.exp(-((nf[..., 0] - 0.5) / 0.06) ** 2) * p["ridges"]
            lcol = lcol * (1 - 0.45 * ridge)[..., None]
        if p["white_patch"] > 0.02:
            wp = p["white_patch"] * _smoothstep(0.55, 0.15, r / p["radius"] + 0.25 * (nc[..., 2] - 0.5))
            lcol = lcol + (np.float32(_C["white"]) - lcol) * wp[..., None]

        # Drawn structures (Pillow) in the image frame.
        def to_img(rf: np.ndarray, ph: np.ndarray) -> np.ndarray:
            rr = rf * np.interp(ph, self.angles, table)
            uu, vv = rr * np.cos(ph) * se, rr * np.sin(ph) / se
            return self._px(np.stack([zoom * (ca * uu - sa * vv) + shift[0],
                                      zoom * (sa * uu + ca * vv) + shift[1]], axis=1))

        D = self.draw_res
        unit = D / 2.0 * zoom * p["radius"]  # drawing pixels per lesion radius

        def spots(name: str, count: float, rmax: float, size: tuple[float, float], periph: float):
            s = les.subs[name][: int(round(min(count, _MAX[name])))]
            if len(s) == 0:
                return None, s
            rf = (1 - periph) * np.sqrt(s[:, 0]) * rmax + periph * (0.65 + 0.3 * s[:, 1])
            ph = s[:, 2] * 2 * np.pi - np.pi
            rad = (size[0] + (size[1] - size[0]) * s[:, 3]) * unit
            return np.concatenate([to_img(rf, ph), rad[:, None]], axis=1), s

        layer = Image.new("RGB", (D, D))
        alpha = Image.new("L", (D, D))
        da, dl = ImageDraw.Draw(alpha), ImageDraw.Draw(layer)
        drew = False

        def blob(xyr: np.ndarray, colour: np.ndarray, strength: float, aspect: float = 1.0):
            cx, cy, rad = xyr
            rad = max(rad, 0.6)
            box = [cx - rad * aspect, cy - rad, cx + rad * aspect, cy + rad]
            dl.ellipse(box, fill=tuple(int(255 * c) for c in np.clip(colour, 0, 1)))
            da.ellipse(box, fill=int(255 * strength))

        if p["lacunae_strength"] > 0.05:
            pts, s = spots("lacunae", p["lacunae_n"], 0.85, (0.08, 0.2), 0.0)
            lac = [np.float32(_C[n]) for n in ("red", "dark_red", "purple")]
            for xyr, row in zip(pts if pts is not None else [], s):
                c = lac[int(row[4] * 2.999)] * (0.85 + 0.3 * row[3])
                blob(xyr, c, p["lacunae_strength"])
                drew = True
        if p["nests_n"] >= 0.5:
            pts, s = spots("nests", p["nests_n"], 0.8, (0.07, 0.16), 0.2)
            for xyr, row in zip(pts if pts is not None else [], s):
                blob(xyr, np.float32(_C["blue_grey"]) * (0.85 + 0.3 * row[4]), 0.75, 1.0 + row[4])
                drew = True
        if p["dots_n"] >= 0.5:
            pts, s = spots("dots", p["dots_n"], 0.9, (0.025, 0.07), p["dots_periph"])
            for xyr, row in zip(pts if pts is not None else [], s):
                blob(xyr, col["dots"] * (0.8 + 0.4 * row[4]), p["dots_strength"])
                drew = True
        if p["milia_n"] >= 0.5:
            pts, s = spots("milia", p["milia_n"], 0.85, (0.03, 0.06), 0.0)
            for xyr in pts if pts is not None else []:
                blob(xyr, np.float32(_C["white"]), 0.85)
                drew = True
        if p["streaks_n"] >= 0.5:
            s = les.subs["streaks"][: int(round(min(p["streaks_n"], _MAX["streaks"])))]
            ph = s[:, 2] * 2 * np.pi - np.pi
            a = to_img(np.full(len(s), 0.8, np.float32), ph)
            b = to_img(1.05 + 0.25 * s[:, 3], ph)
            w = max(1, int(round(0.035 * unit)))
            for pa, pb in zip(a, b):
                dl.line([tuple(pa), tuple(pb)], fill=tuple(int(255 * c) for c in col["dots"]), width=w)
                da.line([tuple(pa), tuple(pb)], fill=200, width=w)
                drew = True
        if p["vessels_dotted"] > 0.05:
            pts, s = spots("dotted", 10 + 30 * p["vessels_dotted"], 0.9, (0.018, 0.03), 0.0)
            for xyr in pts:
                blob(xyr, np.float32(_C["red"]), p["vessels_dotted"])
                drew = True
        if p["vessels_arbor"] > 0.05:
            red = tuple(int(255 * c) for c in _C["red"])
            for j, line in enumerate(les.vessels):
                uv = line * np.float32(p["radius"])
                uu, vv = uv[:, 0] * se, uv[:, 1] / se
                xy = self._px(np.stack([zoom * (ca * uu - sa * vv) + shift[0],
                                        zoom * (sa * uu + ca * vv) + shift[1]], axis=1))
                w = max(1, int(round((0.012 if j < _MAX["trunks"] else 0.007) * D)))
                pts_l = [tuple(q) for q in xy]
                dl.line(pts_l, fill=red, width=w, joint="curve")
                da.line(pts_l, fill=int(255 * p["vessels_arbor"]), width=w, joint="curve")
                drew = True
        if drew:
            alpha = alpha.filter(ImageFilter.GaussianBlur(0.5 * self.ss))
            la = np.asarray(self._down(alpha), dtype=np.float32)[..., None] / 255 * _smoothstep(1.3, 1.0, d)[..., None]
            lcol = lcol + (np.asarray(self._down(layer), dtype=np.float32) / 255 - lcol) * la

        # Skin with mottling and erythema around the lesion; composite the lesion.
        skin = les.skin * (1 + 0.10 * (nc[..., 2:3] - 0.5) + 0.05 * (nf[..., 1:2] - 0.5))
        ery = p["erythema"] * _smoothstep(1.9, 1.0, d)
        skin = skin + (np.float32(_C["pink_red"]) * 1.05 - skin) * (0.6 * ery)[..., None]
        opacity = (mask * p["alpha"])[..., None]
        img = skin + (lcol - skin) * opacity

        # Hairs (drawn per image).
        n_hairs = int(rng.poisson(les.hairiness))
        if n_hairs:
            hair = Image.new("L", (D, D))
            dh = ImageDraw.Draw(hair)
            t = np.linspace(0, 1, 12, dtype=np.float32)[:, None]
            for _ in range(min(n_hairs, 12)):
                p0 = rng.uniform(-1.3, 1.3, 2)
                direction = rng.uniform(0, 2 * np.pi)
                length = rng.uniform(0.6, 2.2)
                p2 = p0 + length * np.array([np.cos(direction), np.sin(direction)])
                p1 = (p0 + p2) / 2 + rng.normal(0, 0.25, 2)
                curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
                w = max(1, int(round(rng.uniform(0.006, 0.014) * D)))
                dh.line([tuple(q) for q in self._px(curve)], fill=int(rng.uniform(170, 240)), width=w, joint="curve")
            ha = np.asarray(self._down(hair), dtype=np.float32)[..., None] / 255
            img = img + (_HAIR[int(rng.integers(len(_HAIR)))] - img) * ha

        # Lighting: brightness, colour cast, illumination fall-off; dermoscope vignette.
        gain = rng.uniform(0.88, 1.08) * rng.normal(1.0, 0.03, 3).astype(np.float32)
        falloff = rng.uniform(0.0, 0.18)
        img = img * gain * (1 - falloff * self.r_img ** 2)[..., None]
        if rng.random() < 0.55:
            rv = rng.uniform(0.95, 1.35)
            off = rng.normal(0, 0.04, 2)
            rr = np.hypot(self.x - off[0], self.y - off[1])
            dark = _smoothstep(rv - 0.03, rv + 0.03, rr)[..., None]
            img = img + (np.float32(rng.uniform(0.0, 0.08)) - img) * dark
        img = img + noise_rng.normal(0.0, 0.012, img.shape).astype(np.float32)

        return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)

    def _down(self, im: Image.Image) -> Image.Image:
        """A supersampled drawing layer, box-filtered to the output size."""
        return im if self.ss == 1 else im.resize((self.size, self.size), Image.Resampling.BOX)


def _class_quotas(n_images: int) -> np.ndarray:
    """Images per class (largest remainder on CLASS_SHARES), every class at least one when n >= 7."""
    shares = np.array([CLASS_SHARES[c] for c in CLASSES])
    raw = shares * n_images
    counts = np.floor(raw).astype(np.int64)
    for i in np.argsort(-(raw - counts), kind="stable")[: n_images - counts.sum()]:
        counts[i] += 1
    if n_images >= len(CLASSES):
        while (counts == 0).any():
            counts[int(np.argmin(counts))] += 1
            counts[int(np.argmax(counts))] -= 1
    return counts


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise SkinlibError(f"data.{name}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


def load_synthetic(data_dir: Optional[Path], image_size: int, *, seed: int = 0,
                   n_images: Optional[int] = None) -> "Dataset":
    """Generate the synthetic dermoscopy dataset.

    Args:
        data_dir: ignored (the source needs no files); accepted for the registry.
        image_size: side ``S`` of the square images, >= 16.
        seed: every random draw derives from it; same seed, byte-identical arrays.
        n_images: number of images (default 3000).

    Shape:
        - images: ``(N, S, S, 3)`` uint8 RGB; labels ``(N,)`` int64 (CLASSES order).
        - lesion_ids ``SYN_000123`` and image_ids ``SYN_IMG_0000001``: ``(N,)`` str.

    Examples:
        >>> ds = load_synthetic(None, 32, seed=1, n_images=50)
        >>> ds.images.shape, ds.images.dtype
        ((50, 32, 32, 3), dtype('uint8'))
    """
    from skinlib.data import Dataset

    size = _check_int("image_size", image_size, 16)
    n = DEFAULT_N_IMAGES if n_images is None else _check_int("n_images", n_images, 1)
    seed = _check_int("seed", seed, 0)

    plan_rng = np.random.default_rng([seed, 0])
    lesion_labels: list[int] = []
    lesion_counts: list[int] = []
    for label, quota in enumerate(_class_quotas(n)):
        left = int(quota)
        while left > 0:
            k = min(int(plan_rng.choice(4, p=IMAGES_PER_LESION_P)) + 1, left)
            lesion_labels.append(label)
            lesion_counts.append(k)
            left -= k
    order = plan_rng.permutation(len(lesion_labels))

    renderer = _Renderer(size)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    lesion_ids = np.empty(n, dtype=object)
    pos = 0
    for li, j in enumerate(order):
        les = _sample_lesion(np.random.default_rng([seed, 1, li]), lesion_labels[j])
        for m in range(lesion_counts[j]):
            images[pos] = renderer.render(les, np.random.default_rng([seed, 2, li, m]),
                                          np.random.default_rng([seed, 3, li, m]))
            labels[pos] = les.label
            lesion_ids[pos] = f"SYN_{li:06d}"
            pos += 1
    perm = plan_rng.permutation(n)
    image_ids = np.array([f"SYN_IMG_{i + 1:07d}" for i in range(n)])
    return Dataset(images=images[perm], labels=labels[perm], lesion_ids=lesion_ids[perm].astype(str),
                   image_ids=image_ids, source="synthetic", predefined_split=None,
                   meta={"generator": "skinlib.data.synthetic", "seed": seed, "n_lesions": len(order),
                         "image_size": size})
