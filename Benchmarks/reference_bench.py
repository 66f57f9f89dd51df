#!/usr/bin/env python3
"""The reference a user would reach for instead of ocdedit: diffusers on PyTorch, CPU, same shapes as `ocdedit bench`.

    python Benchmarks/reference_bench.py unet --size 256 [--batch 1] [--repeats 2] [--threads 2]
    python Benchmarks/reference_bench.py vae --size 256

Random weights from the SD 1.5 configs (no download). Prints a human summary, then one JSON object as the last line
with the keys of `ocdedit bench` (docs/contracts.md): seconds_per_forward, gflops, roofline_fraction (against
torch's own sgemm at 2048³ measured in the same run), peak_rss_bytes.
"""
import argparse, json, resource, time

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=[320, 640, 1280, 1280],
    down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
)
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
)


def unet_gflop(latent):
    # docs/machine.md: 803 GFLOP at 64×64 latents, 180 at 32×32 (the figures ocdedit uses too).
    return 803 * latent * latent / 4096 if latent >= 64 else 180 * latent * latent / 1024


def timed(fn, repeats):
    fn()  # warm-up (allocator, oneDNN kernels)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def roofline(n=2048):
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / timed(lambda: a @ b, 3) / 1e9


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["unet", "vae"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    peak = roofline()
    latent = a.size // 8
    if a.what == "unet":
        unet = UNet2DConditionModel(**SD15_UNET).eval()
        x = torch.randn(a.batch, 4, latent, latent)
        ctx = torch.randn(a.batch, 77, 768)
        t = torch.full((a.batch,), 500)
        best = timed(lambda: unet(x, t, encoder_hidden_states=ctx), a.repeats)
        gflop = unet_gflop(latent) * a.batch
        print(f"diffusers {__import__('diffusers').__version__} / torch {torch.__version__}, {a.threads} threads: "
              f"SD 1.5 UNet {a.size} px batch {a.batch}: {best:.2f} s per forward ({gflop / best:.0f} GFLOP/s, "
              f"{100 * gflop / best / peak:.0f}% of torch's {peak:.0f} GFLOP/s sgemm)")
        out = {"bench": "unet", "impl": "pytorch", "size": a.size, "batch": a.batch, "seconds_per_forward": best,
               "gflops": gflop / best, "roofline_gflops": peak, "roofline_fraction": gflop / best / peak}
    else:
        vae = AutoencoderKL(**SD15_VAE).eval()
        x = torch.randn(1, 3, a.size, a.size)
        enc = timed(lambda: vae.encode(x).latent_dist.mean, a.repeats)
        z = vae.encode(x).latent_dist.mean
        dec = timed(lambda: vae.decode(z).sample, a.repeats)
        gflop = (1100 + 2500) * a.size * a.size / (512 * 512)
        print(f"SD VAE {a.size} px: encode {enc:.2f} s, decode {dec:.2f} s")
        out = {"bench": "vae", "impl": "pytorch", "size": a.size, "seconds_per_forward": enc + dec,
               "encode_seconds": enc, "decode_seconds": dec, "gflops": gflop / (enc + dec),
               "roofline_fraction": gflop / (enc + dec) / peak}
    out["peak_rss_bytes"] = peak_rss()
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
