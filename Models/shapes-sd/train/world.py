#!/usr/bin/env python3
"""The shapes world: frames of coloured shapes over simple backgrounds, with captions and ground truth.

numpy only, deterministic from the seed. Two uses:
  * training data for Models/shapes-sd (train.py imports `random_scene`, `render`, `caption`);
  * evaluation clips for `ocdedit eval` (the command line below; a contract, tools outside the repo rely on it):
        python3 Models/shapes-sd/train/world.py --seed S --clips N --out DIR [--frames F] [--size P] [--layout]

Clip folder format (read by Sources/EvalKit/EvalClips.swift without Python; docs/shapes-world.md):
    DIR/clip-0000/clip.json         metadata and ground truth (below)
    DIR/clip-0000/frames/0000.ppm   RGB frames, binary PPM (P6, maxval 255)
    DIR/clip-0000/masks/0000.pgm    mask of the edited object, binary PGM (P5), 0 or 255
clip.json: width, height, fps, frames, source_prompt, target_prompt, edited_object (index into objects),
source_color, target_color, palette {name: [r, g, b]} (the object colours edit accuracy chooses among),
objects [{shape, color, size, positions [[x, y] per frame], displacements [[dx, dy] per frame; the first is
[0, 0]]}], background {kind, color, velocity [vx, vy]}. Positions are object centres in pixels; displacements are
whole pixels, so frame f's object is frame f-1's moved by displacements[f] exactly.

With --layout (mode=reatco's evaluation, "layout clips"): two objects of different shapes, both recoloured, each asked
to appear elsewhere: masks/NNNN.pgm is then a label map (1 = the first object's region, 2 = the second's, 0 = none;
each region is the object's own shape on another path of the same motion, clear of both objects), and clip.json also
holds region_words ([shape, ...], the word of the target prompt each region is for: the noun, which refocuses best),
region_colors (their target colours) and region_palette (the object palette plus the background's two colours, among
which a region pixel's nearest colour is taken). target_color is the first object's.
"""
import argparse
import json
import os

import numpy as np

# Object colours: the palette edit accuracy chooses among (nearest mean colour).
PALETTE = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 220),
    "yellow": (245, 215, 30),
    "orange": (250, 130, 20),
    "purple": (130, 40, 180),
    "pink": (245, 110, 190),
    "cyan": (30, 200, 220),
}
# Background colours are named apart from the object palette, so a colour word in a caption says which it is.
BACKGROUND_COLORS = {
    "white": (235, 235, 235),
    "gray": (128, 128, 128),
    "black": (25, 25, 25),
    "beige": (225, 205, 165),
    "brown": (110, 70, 40),
}
SHAPES = ("circle", "square", "triangle")
# Background kinds and the word the caption uses for each ("" = plain).
BACKGROUND_KINDS = {"solid": "", "stripes": "striped", "checkerboard": "checkered", "gradient": "gradient",
                    "noise": "textured"}
SUPERSAMPLE = 4


def shade(rgb):
    """The second colour of a patterned background: darker for light colours, lighter for dark ones."""
    c = np.asarray(rgb, np.float32)
    return c * 0.65 if c.mean() > 100 else c + (255 - c) * 0.35


def background(kind, color, width, height, rng):
    """A float32 [H, W, 3] background in 0...255."""
    a = np.asarray(color, np.float32)
    b = shade(color)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "solid":
        t = np.zeros((height, width), np.float32)
    elif kind == "stripes":
        period = float(rng.integers(14, 29))
        direction = rng.integers(0, 3)
        coord = (x, y, x + y)[direction]
        t = (np.floor(coord / (period / 2)) % 2).astype(np.float32)
    elif kind == "checkerboard":
        cell = float(rng.integers(12, 25))
        t = ((np.floor(x / cell) + np.floor(y / cell)) % 2).astype(np.float32)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        coord = x * np.cos(angle) + y * np.sin(angle)
        t = (coord - coord.min()) / max(coord.max() - coord.min(), 1.0)
    elif kind == "noise":
        # Smooth value noise: a coarse random grid, bilinearly upsampled.
        cell = 16
        gh, gw = height // cell + 2, width // cell + 2
        grid = rng.random((gh, gw)).astype(np.float32)
        gy, gx = y / cell, x / cell
        y0, x0 = np.floor(gy).astype(int), np.floor(gx).astype(int)
        fy, fx = gy - y0, gx - x0
        fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)
        t = (grid[y0, x0] * (1 - fy) * (1 - fx) + grid[y0, x0 + 1] * (1 - fy) * fx
             + grid[y0 + 1, x0] * fy * (1 - fx) + grid[y0 + 1, x0 + 1] * fy * fx)
    else:
        raise ValueError(f"unknown background kind {kind}")
    return a * (1 - t[..., None]) + b * t[..., None]


def coverage(shape, cx, cy, size, width, height):
    """Anti-aliased coverage in 0...1 of a shape centred at (cx, cy) with half-size `size`, as float32 [H, W]."""
    out = np.zeros((height, width), np.float32)
    x0, x1 = max(int(np.floor(cx - size)) - 1, 0), min(int(np.ceil(cx + size)) + 2, width)
    y0, y1 = max(int(np.floor(cy - size)) - 1, 0), min(int(np.ceil(cy + size)) + 2, height)
    if x0 >= x1 or y0 >= y1:
        return out
    s = SUPERSAMPLE
    ys = y0 + (np.arange((y1 - y0) * s, dtype=np.float32) + 0.5) / s
    xs = x0 + (np.arange((x1 - x0) * s, dtype=np.float32) + 0.5) / s
    py, px = np.meshgrid(ys - cy, xs - cx, indexing="ij")
    if shape == "circle":
        inside = px * px + py * py <= size * size
    elif shape == "square":
        inside = (np.abs(px) <= size * 0.85) & (np.abs(py) <= size * 0.85)
    elif shape == "triangle":
        # Upward triangle inscribed in the circle of radius `size`, base at y = size / 2.
        top, base, half = -size, size * 0.5, size * np.sqrt(3) / 2
        inside = (py <= base) & (np.abs(px) <= (py - top) / (base - top) * half)
    else:
        raise ValueError(f"unknown shape {shape}")
    cov = inside.reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3))
    out[y0:y1, x0:x1] = cov
    return out


def random_scene(rng, width=128, height=128, frames=1, max_objects=2, max_speed=3, pan_probability=0.5,
                 sizes=(12, 26), min_objects=1):
    """A scene: 1...max_objects objects of distinct colours moving along straight lines, inside the frame for all
    `frames` frames and not overlapping, over a background that may pan."""
    n_objects = int(rng.integers(min_objects, max_objects + 1))
    colors = [str(c) for c in rng.choice(list(PALETTE), size=n_objects, replace=False)]
    kind = str(rng.choice(list(BACKGROUND_KINDS)))
    bg_color = str(rng.choice(list(BACKGROUND_COLORS)))
    velocity = [0, 0]
    if frames > 1 and rng.random() < pan_probability:
        velocity = [int(v) for v in rng.integers(-1, 2, size=2)]
    objects = []
    for color in colors:
        for _ in range(200):
            size = float(rng.uniform(*sizes))
            v = np.zeros(2, int) if frames == 1 else rng.integers(-max_speed, max_speed + 1, size=2)
            if frames > 1 and not v.any():
                continue
            span = v * (frames - 1)
            lo = np.array([size + 2 - min(span[0], 0), size + 2 - min(span[1], 0)])
            hi = np.array([width - size - 2 - max(span[0], 0), height - size - 2 - max(span[1], 0)])
            if (hi < lo).any():
                continue
            start = np.round(rng.uniform(lo, hi))
            positions = [[float(start[0] + v[0] * f), float(start[1] + v[1] * f)] for f in range(frames)]
            clear = all(
                np.hypot(p[0] - q[0], p[1] - q[1]) > size + o["size"] + 4
                for o in objects for p, q in zip(positions, o["positions"]))
            if clear:
                objects.append({"shape": str(rng.choice(SHAPES)), "color": color, "size": size,
                                "positions": positions,
                                "displacements": [[0, 0]] + [[int(v[0]), int(v[1])]] * (frames - 1)})
                break
    seed = int(rng.integers(0, 2**31 - 1))
    return {"width": width, "height": height, "frames": frames, "objects": objects,
            "background": {"kind": kind, "color": bg_color, "velocity": velocity, "seed": seed}}


def render(scene, frame=0, colors=None):
    """Frame `frame` of the scene as uint8 [H, W, 3], and each object's coverage (float32 [H, W]).
    `colors` overrides the objects' colour names (to draw the target of an edit)."""
    w, h, n = scene["width"], scene["height"], scene["frames"]
    bg = scene["background"]
    vx, vy = bg["velocity"]
    pad_x, pad_y = abs(vx) * (n - 1), abs(vy) * (n - 1)
    canvas = background(bg["kind"], BACKGROUND_COLORS[bg["color"]], w + pad_x, h + pad_y,
                        np.random.default_rng(bg["seed"]))
    # The view moves by (vx, vy) per frame, so the background content moves by (-vx, -vy).
    ox = vx * frame if vx >= 0 else pad_x + vx * frame
    oy = vy * frame if vy >= 0 else pad_y + vy * frame
    img = canvas[oy:oy + h, ox:ox + w].copy()
    covers = []
    for i, o in enumerate(scene["objects"]):
        cx, cy = o["positions"][frame]
        cov = coverage(o["shape"], cx, cy, o["size"], w, h)
        color = np.asarray(PALETTE[(colors or {}).get(i, o["color"])], np.float32)
        img = img * (1 - cov[..., None]) + color * cov[..., None]
        covers.append(cov)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), covers


def caption(scene, colors=None):
    """'a red circle and a blue square on a gray striped background'."""
    names = []
    for i, o in enumerate(scene["objects"]):
        color = (colors or {}).get(i, o["color"])
        names.append(f"{'an' if color[0] in 'aeiou' else 'a'} {color} {o['shape']}")
    bg = scene["background"]
    words = [bg["color"], BACKGROUND_KINDS[bg["kind"]], "background"]
    return " and ".join(names) + " on a " + " ".join(w for w in words if w)


def write_ppm(path, rgb):
    h, w, _ = rgb.shape
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        f.write(np.ascontiguousarray(rgb, np.uint8).tobytes())


def write_pgm(path, gray):
    h, w = gray.shape
    with open(path, "wb") as f:
        f.write(b"P5\n%d %d\n255\n" % (w, h))
        f.write(np.ascontiguousarray(gray, np.uint8).tobytes())


def write_png(path, pixels):
    """An RGB uint8 [H, W, 3] or gray uint8 [H, W] image as a PNG (zlib only)."""
    import struct
    import zlib
    h, w = pixels.shape[:2]
    color_type = 2 if pixels.ndim == 3 else 0
    raw = b"".join(b"\0" + np.ascontiguousarray(pixels[y], np.uint8).tobytes() for y in range(h))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write_clip(folder, scene, rng, fps=8, png=False):
    """One evaluation clip: recolour object 0 to another palette colour no object of the scene has.
    `png`: also frames/NNNN.png and masks/NNNN.png, for GStreamer's pngdec (the demo)."""
    used = {o["color"] for o in scene["objects"]}
    target = str(rng.choice([c for c in PALETTE if c not in used]))
    os.makedirs(os.path.join(folder, "frames"), exist_ok=True)
    os.makedirs(os.path.join(folder, "masks"), exist_ok=True)
    for f in range(scene["frames"]):
        rgb, covers = render(scene, f)
        mask = np.where(covers[0] >= 0.5, 255, 0).astype(np.uint8)
        write_ppm(os.path.join(folder, "frames", f"{f:04d}.ppm"), rgb)
        write_pgm(os.path.join(folder, "masks", f"{f:04d}.pgm"), mask)
        if png:
            write_png(os.path.join(folder, "frames", f"{f:04d}.png"), rgb)
            write_png(os.path.join(folder, "masks", f"{f:04d}.png"), mask)
    meta = {
        "width": scene["width"], "height": scene["height"], "fps": fps, "frames": scene["frames"],
        "source_prompt": caption(scene), "target_prompt": caption(scene, {0: target}),
        "edited_object": 0, "source_color": scene["objects"][0]["color"], "target_color": target,
        "palette": {k: list(v) for k, v in PALETTE.items()},
        "objects": scene["objects"],
        "background": {k: scene["background"][k] for k in ("kind", "color", "velocity")},
    }
    with open(os.path.join(folder, "clip.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def clear_path(positions, size, others):
    """Whether an object of half-size `size` on `positions` keeps 4 px from every (positions, size) in `others`."""
    return all(np.hypot(p[0] - q[0], p[1] - q[1]) > size + other_size + 4
               for other, other_size in others for p, q in zip(positions, other))


def layout_scene(rng, width, height, frames):
    """A two-object scene of different shapes and, per object, a region: its shape on another path of the same
    motion, clear of both objects and of the other region. None when this draw leaves no room (draw again)."""
    scene = random_scene(rng, width, height, frames, max_objects=2, max_speed=2, sizes=(10, 16), min_objects=2)
    objects = scene["objects"]
    if len(objects) != 2:
        return None
    objects[1]["shape"] = str(rng.choice([s for s in SHAPES if s != objects[0]["shape"]]))
    taken = [(o["positions"], o["size"]) for o in objects]
    regions = []
    for o in objects:
        size, steps = o["size"], np.array(o["positions"][-1]) - np.array(o["positions"][0])
        lo = np.array([size + 2 - min(steps[0], 0), size + 2 - min(steps[1], 0)])
        hi = np.array([width - size - 2 - max(steps[0], 0), height - size - 2 - max(steps[1], 0)])
        for _ in range(200):
            start = np.round(rng.uniform(lo, hi))
            positions = [[float(start[0] + p[0] - o["positions"][0][0]), float(start[1] + p[1] - o["positions"][0][1])]
                         for p in o["positions"]]
            if clear_path(positions, size, taken):
                break
        else:
            return None
        taken.append((positions, size))
        regions.append(positions)
    scene["regions"] = regions
    return scene


def write_layout_clip(folder, scene, rng, fps=8):
    """One layout clip (module doc): both objects recoloured, each asked for at its region."""
    used = {o["color"] for o in scene["objects"]}
    targets = [str(c) for c in rng.choice([c for c in PALETTE if c not in used], size=2, replace=False)]
    os.makedirs(os.path.join(folder, "frames"), exist_ok=True)
    os.makedirs(os.path.join(folder, "masks"), exist_ok=True)
    w, h = scene["width"], scene["height"]
    for f in range(scene["frames"]):
        rgb, _ = render(scene, f)
        labels = np.zeros((h, w), np.uint8)
        for i, (o, positions) in enumerate(zip(scene["objects"], scene["regions"])):
            cx, cy = positions[f]
            labels[coverage(o["shape"], cx, cy, o["size"], w, h) >= 0.5] = i + 1
        write_ppm(os.path.join(folder, "frames", f"{f:04d}.ppm"), rgb)
        write_pgm(os.path.join(folder, "masks", f"{f:04d}.pgm"), labels)
    bg = BACKGROUND_COLORS[scene["background"]["color"]]
    region_palette = {k: list(v) for k, v in PALETTE.items()}
    region_palette["background"] = list(bg)
    region_palette["background-shade"] = [int(round(float(c))) for c in shade(bg)]
    meta = {
        "width": w, "height": h, "fps": fps, "frames": scene["frames"],
        "source_prompt": caption(scene), "target_prompt": caption(scene, {0: targets[0], 1: targets[1]}),
        "edited_object": 0, "source_color": scene["objects"][0]["color"], "target_color": targets[0],
        "palette": {k: list(v) for k, v in PALETTE.items()},
        "objects": scene["objects"],
        "background": {k: scene["background"][k] for k in ("kind", "color", "velocity")},
        "region_words": [o["shape"] for o in scene["objects"]],
        "region_colors": targets,
        "region_palette": region_palette,
        "regions": scene["regions"],
    }
    with open(os.path.join(folder, "clip.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def main():
    p = argparse.ArgumentParser(description="Writes evaluation clips of the shapes world (see the module doc).")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--clips", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--frames", type=int, default=16, help="frames per clip (at least 16 for eval)")
    p.add_argument("--size", type=int, default=128, help="frame width and height in pixels")
    p.add_argument("--max-objects", type=int, default=2)
    p.add_argument("--png", action="store_true", help="also write PNG copies of frames and masks")
    p.add_argument("--layout", action="store_true",
                   help="layout clips for mode=reatco: two objects, each asked for elsewhere (label masks)")
    args = p.parse_args()
    if args.clips < 1 or args.frames < 1 or args.size < 64:
        p.error("--clips and --frames must be at least 1, --size at least 64")
    rng = np.random.default_rng(args.seed)
    for i in range(args.clips):
        if args.layout:
            scene = None
            while scene is None:
                scene = layout_scene(rng, args.size, args.size, args.frames)
            meta = write_layout_clip(os.path.join(args.out, f"clip-{i:04d}"), scene, rng)
            print(f"clip-{i:04d}: {meta['source_prompt']!r} -> {meta['region_words']}")
            continue
        scene = random_scene(rng, args.size, args.size, args.frames, args.max_objects)
        meta = write_clip(os.path.join(args.out, f"clip-{i:04d}"), scene, rng, png=args.png)
        print(f"clip-{i:04d}: {meta['source_prompt']!r} -> {meta['target_color']}")


if __name__ == "__main__":
    main()
