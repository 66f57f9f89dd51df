#!/usr/bin/env python3
"""Trains Models/shapes-sd: a small Stable Diffusion 1.x (same block types, schedule and file layout) on the
shapes world (world.py). CPU only, seeded, resumable: every stage saves its state to --work every five minutes
and a rerun continues where it stopped (a resumed run draws other batches than an uninterrupted one).
`make model` runs all stages with the pinned stack of requirements.txt.

Stages (--stage all runs them in order, skipping finished ones):
  data     render the training images and captions (world.py, numpy)
  vae      train the AutoencoderKL (L1 + L2 on pixels of the decoded posterior mean, KL 1e-6) on random crops
  latents  encode the UNet's training images once (mean of the posterior); scaling_factor = 1 / std of the latents
  unet     train the UNet2DConditionModel and the CLIPTextModel together (epsilon prediction, SD 1.x
           scaled_linear schedule 0.00085-0.012 over 1000 steps, min-SNR-5 loss weights, caption dropout 10 %
           so classifier-free guidance works, EMA of the weights)
  export   write the diffusers folder (F16 safetensors) to --out
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np

# OpenMP threads that sleep at every barrier lose the core to any other busy process and wait a scheduler tick
# to get it back: on this 2-core machine a concurrent build made a VAE step 10x slower. Spinning keeps the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")
import torch  # noqa: E402
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BPE = os.path.join(ROOT, "Tests", "Fixtures", "clip-bpe")
SIZE = 128

# Four blocks (three downsamplings: latents are 1/8 of the frame, as in SD), four GroupNorm groups (SD's four
# channels per group at the top level). The learning rate matters more than the shape: at 2e-3 this VAE could not
# even fit four flat colours (12.7 dB after 200 steps, every output grey), at 3e-4 it reached 37 dB.
VAE_CONFIG = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32, 64, 128),
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  layers_per_block=1, norm_num_groups=4, sample_size=SIZE)
TEXT_CONFIG = dict(vocab_size=49408, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                   num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
                   bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, projection_dim=64)
UNET_CONFIG = dict(sample_size=SIZE // 8, in_channels=4, out_channels=4, layers_per_block=1,
                   block_out_channels=(48, 96, 128),
                   down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                   cross_attention_dim=64, attention_head_dim=2, norm_num_groups=16)
SCHEDULER_CONFIG = {"_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
                    "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
                    "prediction_type": "epsilon", "set_alpha_to_one": False, "steps_offset": 1,
                    "trained_betas": None, "timestep_spacing": "leading"}


def log(work, text):
    line = f"{time.strftime('%H:%M:%S')} {text}"
    print(line, flush=True)
    with open(os.path.join(work, "log.txt"), "a") as f:
        f.write(line + "\n")


def tokenizer():
    from transformers import CLIPTokenizer
    return CLIPTokenizer(os.path.join(BPE, "vocab.json"), os.path.join(BPE, "merges.txt"),
                         pad_token="<|endoftext|>")


def token_ids(tok, captions):
    """[N, 77] int64: BOS, the caption's tokens, EOS, padded with EOS (SD 1.x)."""
    return torch.tensor(tok(captions, padding="max_length", max_length=77, truncation=True).input_ids)


def save_state(path, **state):
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def stage_data(args):
    path = os.path.join(args.work, "data.npz")
    if os.path.exists(path):
        return
    rng = np.random.default_rng(args.seed)
    images = np.zeros((args.images, SIZE, SIZE, 3), np.uint8)
    captions = []
    t0 = time.time()
    for i in range(args.images):
        scene = world.random_scene(rng, SIZE, SIZE, frames=1)
        images[i] = world.render(scene)[0]
        captions.append(world.caption(scene))
    np.savez(path + ".tmp.npz", images=images, captions=np.array(captions))
    os.replace(path + ".tmp.npz", path)
    log(args.work, f"data: {args.images} images in {time.time() - t0:.0f} s")


def load_data(args):
    d = np.load(os.path.join(args.work, "data.npz"))
    return d["images"], [str(c) for c in d["captions"]]


def to_pixels(batch):
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 127.5 - 1


def stage_vae(args):
    from diffusers import AutoencoderKL
    done = os.path.join(args.work, "vae.done")
    if os.path.exists(done):
        return
    images, _ = load_data(args)
    torch.manual_seed(args.seed)
    vae = AutoencoderKL(**VAE_CONFIG)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    ckpt = os.path.join(args.work, "vae.pt")
    step, elapsed = 0, 0.0
    if os.path.exists(ckpt):
        s = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(s["model"]), opt.load_state_dict(s["opt"])
        step, elapsed = s["step"], s["elapsed"]
    rng = np.random.default_rng(args.seed + step)
    start, last_save, running = time.time() - elapsed, time.time(), None
    crop = args.vae_crop
    while step < args.vae_steps:
        frac = step / args.vae_steps
        for g in opt.param_groups:
            g["lr"] = args.vae_lr * min(1.0, (step + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        idx = rng.integers(0, len(images), args.vae_batch)
        y, x = rng.integers(0, SIZE - crop + 1, 2)
        batch = to_pixels(images[idx, y:y + crop, x:x + crop])
        posterior = vae.encode(batch).latent_dist
        # Decode the posterior mean, as the editor encodes (DESIGN: mean for determinism). Sampling from a freshly
        # initialised posterior (std ~1) drowned the signal: 17 dB after 700 steps.
        recon = vae.decode(posterior.mean).sample
        rec = F.mse_loss(recon, batch) + F.l1_loss(recon, batch)
        # The KL term only keeps the posterior from drifting (SD's VAE: 1e-6 against a summed pixel loss).
        loss = rec + 1e-6 * posterior.kl().mean() / (crop * crop * 3)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        mse = F.mse_loss(recon.detach().clamp(-1, 1), batch).item()
        running = mse if running is None else 0.98 * running + 0.02 * mse
        if step % 100 == 0:
            psnr = 10 * math.log10(4 / max(running, 1e-10))
            log(args.work, f"vae step {step} mse {running:.5f} psnr {psnr:.2f} dB lr {opt.param_groups[0]['lr']:.2e} "
                           f"{(time.time() - start) / 60:.1f} min")
        if time.time() - last_save > 300:
            save_state(ckpt, model=vae.state_dict(), opt=opt.state_dict(), step=step, elapsed=time.time() - start)
            last_save = time.time()
    save_state(ckpt, model=vae.state_dict(), opt=opt.state_dict(), step=step, elapsed=time.time() - start)
    open(done, "w").write(str(step))
    log(args.work, f"vae done: {step} steps in {(time.time() - start) / 60:.1f} min")


def load_vae(args):
    from diffusers import AutoencoderKL
    vae = AutoencoderKL(**VAE_CONFIG)
    vae.load_state_dict(torch.load(os.path.join(args.work, "vae.pt"), weights_only=False)["model"])
    return vae.eval()


@torch.no_grad()
def stage_latents(args):
    path = os.path.join(args.work, "latents.pt")
    if os.path.exists(path):
        return
    images, _ = load_data(args)
    images = images[:args.unet_images]
    vae = load_vae(args)
    out, mse = [], []
    t0 = time.time()
    for i in range(0, len(images), 64):
        batch = to_pixels(images[i:i + 64])
        mean = vae.encode(batch).latent_dist.mean
        out.append(mean)
        if i < 256:
            mse.append(F.mse_loss(vae.decode(mean).sample.clamp(-1, 1), batch).item())
        if i % 6400 == 0:
            log(args.work, f"latents: {i} of {len(images)} encoded, {time.time() - t0:.0f} s")
    latents = torch.cat(out)
    scaling = 1.0 / latents.std().item()
    psnr = 10 * math.log10(4 / np.mean(mse))
    torch.save({"latents": latents, "scaling_factor": scaling}, path)
    log(args.work, f"latents: {tuple(latents.shape)}, std {latents.std().item():.4f}, scaling_factor {scaling:.5f}, "
                   f"round-trip PSNR (first 256) {psnr:.2f} dB, {time.time() - t0:.0f} s")


def alphas_cumprod():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


class EMA:
    def __init__(self, modules, decay):
        self.params = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay = decay

    @torch.no_grad()
    def update(self, step):
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, self.params):
            s.mul_(d).add_(p.detach(), alpha=1 - d)

    def state_dict(self):
        return self.shadow

    def load_state_dict(self, shadow):
        self.shadow = [s.clone() for s in shadow]

    @torch.no_grad()
    def copy_to_models(self):
        for s, p in zip(self.shadow, self.params):
            p.copy_(s)


def build_unet_and_text():
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    return UNet2DConditionModel(**UNET_CONFIG), CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))


def unet_lr(args, cycles, step):
    """Cosine cycles (warm restarts): cycle k has `cycles[k]` steps, 300 of warm-up, a peak of unet_lr · 0.5^k and
    a floor of 5 % of its peak. A resumed run finds its place in the cycles from the checkpoint's step."""
    k, first = 0, 0
    while k < len(cycles) - 1 and step >= first + cycles[k]:
        first += cycles[k]
        k += 1
    frac, peak = (step - first) / cycles[k], args.unet_lr * 0.5 ** k
    return peak * min(1.0, (step - first + 1) / 300) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


def stage_unet(args):
    done = os.path.join(args.work, "unet.done")
    if os.path.exists(done):
        return
    _, captions = load_data(args)
    captions = captions[:args.unet_images]
    lat = torch.load(os.path.join(args.work, "latents.pt"))
    latents, scaling = lat["latents"] * lat["scaling_factor"], lat["scaling_factor"]
    tok = tokenizer()
    ids = token_ids(tok, captions)
    empty = token_ids(tok, [""])[0]
    torch.manual_seed(args.seed)
    unet, text = build_unet_and_text()
    modules = [unet, text]
    params = [p for m in modules for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=args.unet_lr, weight_decay=0.01)
    ema = EMA(modules, args.ema)
    ckpt = os.path.join(args.work, "unet.pt")
    step, elapsed = 0, 0.0
    if os.path.exists(ckpt):
        s = torch.load(ckpt, weights_only=False)
        unet.load_state_dict(s["unet"]), text.load_state_dict(s["text"]), opt.load_state_dict(s["opt"])
        ema.load_state_dict(s["ema"])
        step, elapsed = s["step"], s["elapsed"]
    log(args.work, f"unet: {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M params, text encoder "
                   f"{sum(p.numel() for p in text.parameters()) / 1e6:.2f} M; scaling_factor {scaling:.5f}")
    ac = alphas_cumprod()
    snr = ac / (1 - ac)
    weight = torch.clamp(snr, max=5.0) / snr
    rng = np.random.default_rng(args.seed + 7 + step)
    gen = torch.Generator().manual_seed(args.seed + step)
    start, last_save, running = time.time() - elapsed, time.time(), None
    cycles = [int(n) for n in str(args.unet_steps).split(",")]
    total = sum(cycles)
    while step < total:
        for g in opt.param_groups:
            g["lr"] = unet_lr(args, cycles, step)
        idx = torch.from_numpy(rng.integers(0, len(latents), args.unet_batch))
        x0 = latents[idx]
        cond = ids[idx].clone()
        drop = torch.from_numpy(rng.random(args.unet_batch) < 0.1)
        cond[drop] = empty
        t = torch.randint(0, 1000, (args.unet_batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = ac[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        hidden = text(cond).last_hidden_state
        pred = unet(xt, t, encoder_hidden_states=hidden).sample
        per = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
        loss = (per * weight[t]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(step)
        step += 1
        running = loss.item() if running is None else 0.99 * running + 0.01 * loss.item()
        if step % 100 == 0:
            log(args.work, f"unet step {step} loss {running:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                           f"{(time.time() - start) / 60:.1f} min")
        if time.time() - last_save > 300:
            save_state(ckpt, unet=unet.state_dict(), text=text.state_dict(), opt=opt.state_dict(),
                       ema=ema.state_dict(), step=step, elapsed=time.time() - start)
            last_save = time.time()
    save_state(ckpt, unet=unet.state_dict(), text=text.state_dict(), opt=opt.state_dict(), ema=ema.state_dict(),
               step=step, elapsed=time.time() - start)
    open(done, "w").write(str(step))
    log(args.work, f"unet done: {step} steps in {(time.time() - start) / 60:.1f} min")


def stage_export(args):
    vae = load_vae(args)
    lat = torch.load(os.path.join(args.work, "latents.pt"))
    vae.register_to_config(scaling_factor=round(lat["scaling_factor"], 5))
    unet, text = build_unet_and_text()
    s = torch.load(os.path.join(args.work, "unet.pt"), weights_only=False)
    unet.load_state_dict(s["unet"]), text.load_state_dict(s["text"])
    ema = EMA([unet, text], args.ema)
    ema.load_state_dict(s["ema"])
    if not args.no_ema:
        ema.copy_to_models()
    out = args.out
    for name, model in (("unet", unet), ("vae", vae), ("text_encoder", text)):
        shutil.rmtree(os.path.join(out, name), ignore_errors=True)
        model.to(torch.float16).save_pretrained(os.path.join(out, name), safe_serialization=True)
    tok_dir = os.path.join(out, "tokenizer")
    os.makedirs(tok_dir, exist_ok=True)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(BPE, f), tok_dir)
    json.dump({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>"}, open(os.path.join(tok_dir, "special_tokens_map.json"), "w"), indent=2)
    json.dump({"model_max_length": 77, "do_lower_case": True, "pad_token": "<|endoftext|>",
               "tokenizer_class": "CLIPTokenizer"}, open(os.path.join(tok_dir, "tokenizer_config.json"), "w"),
              indent=2)
    os.makedirs(os.path.join(out, "scheduler"), exist_ok=True)
    json.dump(SCHEDULER_CONFIG, open(os.path.join(out, "scheduler", "scheduler_config.json"), "w"), indent=2)
    json.dump({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
               "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
               "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "DDIMScheduler"]},
              open(os.path.join(out, "model_index.json"), "w"), indent=2)
    log(args.work, f"export: {out} (unet step {s['step']}, {'raw' if args.no_ema else 'EMA'} weights)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", default="all", choices=["all", "data", "vae", "latents", "unet", "export"])
    p.add_argument("--work", default=os.path.join(ROOT, ".train-shapes-sd"))
    p.add_argument("--out", default=os.path.join(ROOT, "Models", "shapes-sd"))
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--images", type=int, default=40000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vae-steps", type=int, default=8000)
    p.add_argument("--vae-batch", type=int, default=8)
    p.add_argument("--vae-crop", type=int, default=64)
    p.add_argument("--vae-lr", type=float, default=3e-4)
    p.add_argument("--unet-steps", default="6000",
                   help="steps of each cosine cycle, comma-separated (each later cycle at half the peak rate)")
    p.add_argument("--unet-images", type=int, default=20000, help="training images encoded for the UNet (the first N)")
    p.add_argument("--unet-batch", type=int, default=32)
    p.add_argument("--unet-lr", type=float, default=3e-4)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--no-ema", action="store_true", help="export the raw weights instead of the EMA")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    stages = {"data": stage_data, "vae": stage_vae, "latents": stage_latents, "unet": stage_unet,
              "export": stage_export}
    for name, fn in stages.items():
        if args.stage in ("all", name):
            fn(args)


if __name__ == "__main__":
    main()
