#!/usr/bin/env python3
"""Does text-to-image with our Swift engine draw the prompted colour? (numpy only; runs `ocdedit generate`.)

    python3 Benchmarks/generate_colours.py [--model Models/shapes-sd] [--samples 40] [--steps 25] [--guidance 5]

For each sample, a prompt "a {colour} {shape} on a {background} background" (colours, shapes and plain backgrounds
of the shapes world, cycled; seed = sample index) goes through `ocdedit generate`. Every pixel is labelled with the
nearest (Euclidean RGB) of the world's object and background colours; a sample counts as right when the prompted
colour labels at least 1 % of the pixels and more than any other object colour. Prints one line per sample, then a
JSON line with `samples`, `right`, `share`.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Models", "shapes-sd", "train"))
import world  # noqa: E402


def read_png(path):
    """RGB8 PNGs without interlacing, filter types 0-4 (what ocdedit writes, and more)."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
            assert body[8] == 8 and body[9] == 2 and body[12] == 0, "RGB8, not interlaced"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    out = np.zeros((h, 3 * w), np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        prev = out[y - 1] if y else np.zeros(3 * w, np.int32)
        if f == 0:
            out[y] = line
        elif f == 2:
            out[y] = (line + prev) & 255
        else:
            row = np.zeros(3 * w, np.int32)
            for x in range(3 * w):
                a = row[x - 3] if x >= 3 else 0
                b, c = prev[x], (prev[x - 3] if x >= 3 else 0)
                if f == 1:
                    p = a
                elif f == 3:
                    p = (a + b) // 2
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                row[x] = (line[x] + p) & 255
            out[y] = row
    return out.reshape(h, w, 3).astype(np.uint8)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(ROOT, "Models", "shapes-sd"))
    p.add_argument("--ocdedit", default=os.path.join(ROOT, ".build", "release", "ocdedit"))
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=5.0)
    args = p.parse_args()
    names = list(world.PALETTE) + list(world.BACKGROUND_COLORS)
    colours = np.array([world.PALETTE.get(n, world.BACKGROUND_COLORS.get(n)) for n in names], np.float32)
    objects = list(world.PALETTE)
    right = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.samples):
            colour = objects[i % len(objects)]
            shape = world.SHAPES[(i // len(objects)) % len(world.SHAPES)]
            background = list(world.BACKGROUND_COLORS)[(i // 3) % len(world.BACKGROUND_COLORS)]
            prompt = f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {shape} on a {background} background"
            out = os.path.join(tmp, f"{i:04d}.png")
            subprocess.run([args.ocdedit, "generate", "--model", args.model, "--prompt", prompt, "--seed", str(i),
                            "--steps", str(args.steps), "--guidance-scale", str(args.guidance), "--output", out],
                           check=True, stdout=subprocess.DEVNULL)
            img = read_png(out).reshape(-1, 3).astype(np.float32)
            label = np.argmin(((img[:, None, :] - colours[None]) ** 2).sum(-1), axis=1)
            counts = np.bincount(label, minlength=len(names))[:len(objects)]
            share = counts[objects.index(colour)] / len(img)
            ok = share >= 0.01 and counts.argmax() == objects.index(colour)
            right += ok
            print(f"{i:3d} {'right' if ok else 'WRONG'} {prompt!r}: {share:.1%} of pixels; most: "
                  f"{objects[counts.argmax()]}")
    print(json.dumps({"samples": args.samples, "right": int(right), "share": right / args.samples}))


if __name__ == "__main__":
    main()
