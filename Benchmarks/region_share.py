#!/usr/bin/env python3
"""Share of the layout clips' region pixels drawn in their words' colours, from the frames `ocdedit eval --save`
wrote (numpy only). A finer figure than eval's `region_accuracy`, which counts a frame only when every region is
mostly right:

    ocdedit eval --model M --clips CLIPS --mode reatco --save OUT ...
    python3 Benchmarks/region_share.py OUT CLIPS

A region pixel counts when the nearest colour (Euclidean RGB) of the clip's `region_palette` to its output colour is
its region's colour (`region_colors`, label v = entry v-1). Prints one line per clip, then the share over all
frames and regions (each region-frame weighted alike).
"""
import json
import os
import sys

import numpy as np


def read_pnm(path):
    """Binary PPM (P6) or PGM (P5) with maxval 255, as uint8 [H, W, 3] or [H, W]."""
    data = open(path, "rb").read()
    magic, width, height, _, body = data.split(maxsplit=4)
    w, h = int(width), int(height)
    channels = 3 if magic == b"P6" else 1
    pixels = np.frombuffer(body[:w * h * channels], np.uint8)
    return pixels.reshape(h, w, 3) if channels == 3 else pixels.reshape(h, w)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    saved, clips = sys.argv[1], sys.argv[2]
    shares = []
    for clip in sorted(os.listdir(saved)):
        meta = json.load(open(os.path.join(clips, clip, "clip.json")))
        names = list(meta["region_palette"])
        colours = np.array([meta["region_palette"][n] for n in names], float)
        clip_shares = []
        for f in range(meta["frames"]):
            out = read_pnm(os.path.join(saved, clip, "output", f"{f:04d}.ppm")).astype(float)
            labels = read_pnm(os.path.join(clips, clip, "masks", f"{f:04d}.pgm"))
            nearest = np.argmin(((out[:, :, None, :] - colours[None, None]) ** 2).sum(-1), -1)
            for k, colour in enumerate(meta["region_colors"]):
                region = labels == k + 1
                if region.any():
                    clip_shares.append(float((nearest[region] == names.index(colour)).mean()))
        print(f"{clip}: {np.mean(clip_shares):.3f} of the region pixels in the asked colour")
        shares += clip_shares
    print(f"all: {np.mean(shares):.3f}")


if __name__ == "__main__":
    main()
