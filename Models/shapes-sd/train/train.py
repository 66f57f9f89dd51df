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
  ground   continue both from the unet stage's EMA weights with a grounding loss on the cross-attention maps
           (TokenCompose): each object's colour and shape words attend to the object (--ground-steps, 0 = skip)
  edit     continue both from the last stage's EMA weights with recolouring pairs besides the diffusion loss: a
           scene noised, captioned as its copy with one object in another colour, is asked to denoise to that
           copy (--edit-steps, 0 = skip)
  export   write the diffusers folder (F16 safetensors) to --out

--from-model DIR takes an exported folder's weights as the vae and unet stages' results, so the later stages
fine-tune it (`--from-model Models/shapes-sd --stage all` re-encodes the latents and runs the grounding stage).
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


def render_scenes(rng, n):
    """n random single-frame scenes: uint8 images [n, H, W, 3], each object's coverage at the latent grid (mean
    over 8x8 pixels; object i of a caption is covers[:, i], a missing object all zeros) and the captions."""
    images = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    covers = np.zeros((n, 2, SIZE // 8, SIZE // 8), np.float32)
    captions = []
    for i in range(n):
        scene = world.random_scene(rng, SIZE, SIZE, frames=1)
        images[i], object_covers = world.render(scene)
        for k, cov in enumerate(object_covers):
            covers[i, k] = cov.reshape(SIZE // 8, 8, SIZE // 8, 8).mean(axis=(1, 3))
        captions.append(world.caption(scene))
    return images, covers, captions


def stage_data(args):
    path = os.path.join(args.work, "data.npz")
    if os.path.exists(path):
        return
    t0 = time.time()
    # The coverages are what the grounding stage's attention maps are asked to follow.
    images, covers, captions = render_scenes(np.random.default_rng(args.seed), args.images)
    np.savez(path + ".tmp.npz", images=images, captions=np.array(captions), covers=covers.astype(np.float16))
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
    # A VAE taken from an exported folder keeps the scaling factor its UNet was trained with.
    scaling = torch.load(os.path.join(args.work, "vae.pt"), weights_only=False).get("scaling_factor")
    scaling = scaling or 1.0 / latents.std().item()
    psnr = 10 * math.log10(4 / np.mean(mse))
    torch.save({"latents": latents, "scaling_factor": scaling}, path)
    log(args.work, f"latents: {tuple(latents.shape)}, std {latents.std().item():.4f}, scaling_factor {scaling:.5f}, "
                   f"round-trip PSNR (first 256) {psnr:.2f} dB, {time.time() - t0:.0f} s")


def alphas_cumprod():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def min_snr_weights():
    """alpha_bar per timestep and the min-SNR-5 loss weight of an epsilon prediction at each: min(SNR, 5) / SNR."""
    ac = alphas_cumprod()
    snr = ac / (1 - ac)
    return ac, torch.clamp(snr, max=5.0) / snr


def diffusion_training_set(args, tok):
    """What the UNet stages train on: the first --unet-images latents (times the scaling factor), the scaling
    factor, their captions' token ids, the empty prompt's ids and the captions (not the images: data.npz's images
    are a gigabyte the latents already stand for)."""
    captions = [str(c) for c in np.load(os.path.join(args.work, "data.npz"))["captions"][:args.unet_images]]
    lat = torch.load(os.path.join(args.work, "latents.pt"))
    return (lat["latents"] * lat["scaling_factor"], lat["scaling_factor"], token_ids(tok, captions),
            token_ids(tok, [""])[0], captions)


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


def build_unet_and_text(args, unet_state=None):
    """The UNet of UNET_CONFIG and the text encoder. Layers per block: those of `unet_state` (a checkpoint's UNet
    weights, so a later stage or a resumed run keeps the depth it was trained with, --from-model's too), else
    --unet-layers."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    layers = args.unet_layers
    if unet_state is not None:
        prefix = "down_blocks.0.resnets."
        layers = 1 + max(int(k[len(prefix):].split(".")[0]) for k in unet_state if k.startswith(prefix))
    unet = UNet2DConditionModel(**dict(UNET_CONFIG, layers_per_block=layers))
    return unet, CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))


def unet_lr(args, cycles, step):
    """Cosine cycles (warm restarts): cycle k has `cycles[k]` steps, 300 of warm-up, a peak of unet_lr · 0.5^k and
    a floor of 5 % of its peak. A resumed run finds its place in the cycles from the checkpoint's step."""
    k, first = 0, 0
    while k < len(cycles) - 1 and step >= first + cycles[k]:
        first += cycles[k]
        k += 1
    frac, peak = (step - first) / cycles[k], args.unet_lr * 0.5 ** k
    return peak * min(1.0, (step - first + 1) / 300) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


def add_noise(x0, noise, t, ac):
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise (the forward process)."""
    a = ac[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def noised_batch(rng, gen, latents, ids, empty, batch, ac):
    """A training batch: indices, which captions were dropped (10 %, to the empty prompt, so classifier-free
    guidance works), the caption ids, timesteps, noise and the noised latents."""
    idx = torch.from_numpy(rng.integers(0, len(latents), batch))
    x0 = latents[idx]
    cond = ids[idx].clone()
    drop = torch.from_numpy(rng.random(batch) < 0.1)
    cond[drop] = empty
    t = torch.randint(0, 1000, (batch,), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    return idx, drop, cond, t, noise, add_noise(x0, noise, t, ac)


def apply_step(loss, opt, params, ema, step):
    """One optimiser step with the gradient norm clipped to 1, then the EMA update."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    ema.update(step)


def save_unet_state(path, unet, text, opt, ema, step, start):
    save_state(path, unet=unet.state_dict(), text=text.state_dict(), opt=opt.state_dict(), ema=ema.state_dict(),
               step=step, elapsed=time.time() - start)


def save_when_due(last_save, ckpt, unet, text, opt, ema, step, start):
    """Saves the stage's checkpoint when five minutes have passed since `last_save`; returns the last save's time."""
    if time.time() - last_save <= 300:
        return last_save
    save_unet_state(ckpt, unet, text, opt, ema, step, start)
    return time.time()


def finish_unet_stage(args, name, ckpt, unet, text, opt, ema, step, start):
    """The last checkpoint of a stage training the UNet and text encoder, and its `<name>.done` marker."""
    save_unet_state(ckpt, unet, text, opt, ema, step, start)
    open(os.path.join(args.work, name + ".done"), "w").write(str(step))
    log(args.work, f"{name} done: {step} steps in {(time.time() - start) / 60:.1f} min")


def stage_unet(args):
    done = os.path.join(args.work, "unet.done")
    if os.path.exists(done):
        return
    latents, scaling, ids, empty, _ = diffusion_training_set(args, tokenizer())
    torch.manual_seed(args.seed)
    ckpt = os.path.join(args.work, "unet.pt")
    s = torch.load(ckpt, weights_only=False) if os.path.exists(ckpt) else None
    unet, text = build_unet_and_text(args, s["unet"] if s else None)
    modules = [unet, text]
    params = [p for m in modules for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=args.unet_lr, weight_decay=0.01)
    ema = EMA(modules, args.ema)
    step, elapsed = 0, 0.0
    if s is not None:
        unet.load_state_dict(s["unet"]), text.load_state_dict(s["text"]), opt.load_state_dict(s["opt"])
        ema.load_state_dict(s["ema"])
        step, elapsed = s["step"], s["elapsed"]
    log(args.work, f"unet: {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M params, text encoder "
                   f"{sum(p.numel() for p in text.parameters()) / 1e6:.2f} M; scaling_factor {scaling:.5f}")
    ac, weight = min_snr_weights()
    rng = np.random.default_rng(args.seed + 7 + step)
    gen = torch.Generator().manual_seed(args.seed + step)
    start, last_save, running = time.time() - elapsed, time.time(), None
    cycles = [int(n) for n in str(args.unet_steps).split(",")]
    total = sum(cycles)
    while step < total:
        for g in opt.param_groups:
            g["lr"] = unet_lr(args, cycles, step)
        _, _, cond, t, noise, xt = noised_batch(rng, gen, latents, ids, empty, args.unet_batch, ac)
        hidden = text(cond).last_hidden_state
        pred = unet(xt, t, encoder_hidden_states=hidden).sample
        per = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
        loss = (per * weight[t]).mean()
        apply_step(loss, opt, params, ema, step)
        step += 1
        running = loss.item() if running is None else 0.99 * running + 0.01 * loss.item()
        if step % 100 == 0:
            log(args.work, f"unet step {step} loss {running:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                           f"{(time.time() - start) / 60:.1f} min")
        last_save = save_when_due(last_save, ckpt, unet, text, opt, ema, step, start)
    finish_unet_stage(args, "unet", ckpt, unet, text, opt, ema, step, start)


class GroundingProcessor:
    """Cross-attention (attn2) as diffusers' AttnProcessor computes it, keeping the head-averaged probabilities
    [B, tokens, 77] of the last call in `self.probs` (gradients flow through them)."""

    def __init__(self):
        self.probs = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        batch = hidden_states.shape[0]
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(query, key, None)
        self.probs = probs.view(batch, attn.heads, *probs.shape[1:]).mean(dim=1)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        return attn.to_out[1](attn.to_out[0](out))


def grounding_targets(tok, captions):
    """Per caption, the token positions (BOS = 0) of each object's colour and shape words: int64 [N, 2, 2], -1 where
    the caption has no such object. Captions are "a|an <colour> <shape> and ... on a ...": every word is whole
    BPE tokens, so a word starts at 1 + the token count of the words before it. A word of several tokens ("cy an")
    is grounded by its last, the first that has seen the whole word (the text encoder is causal)."""
    positions = torch.full((len(captions), 2, 2), -1, dtype=torch.long)
    lengths = {}
    for i, caption in enumerate(captions):
        at, words = 1, caption.split(" ")
        objects_part = words.index("on") if "on" in words else len(words)
        for w, word in enumerate(words):
            if word not in lengths:
                lengths[word] = len(tok(word, add_special_tokens=False).input_ids)
            if w < objects_part and w % 4 in (1, 2):
                positions[i, w // 4, w % 4 - 1] = at + lengths[word] - 1
            at += lengths[word]
    return positions


def object_word_maps(processors, covers, positions):
    """For every cross-attention layer of at least 8x8 tokens and each object k of the captions that have it: the
    layer's probabilities [b, r*r, 77], the object's coverage at the layer's grid [b, r*r], its two words' maps
    [b, r*r] each and their positions [b, 2] (b = the captions with object k)."""
    for proc in processors:
        probs = proc.probs  # [B, r*r, 77]
        side = int(round(math.sqrt(probs.shape[1])))
        if side < 8:
            continue
        cov = F.adaptive_avg_pool2d(covers, side).flatten(2)  # [B, 2, r*r]
        for k in range(2):
            valid = positions[:, k, 0] >= 0
            if not valid.any():
                continue
            p, words = probs[valid], positions[valid, k]
            maps = [p.gather(2, words[:, w].view(-1, 1, 1).expand(-1, p.shape[1], 1)).squeeze(2) for w in range(2)]
            yield p, cov[valid, k], maps, words


def inside_share(word_map, coverage):
    """Per caption, the share of a word's attention that falls inside its object."""
    return (word_map * coverage).sum(1) / word_map.sum(1).clamp_min(1e-8)


def grounding_loss(processors, covers, positions):
    """TokenCompose's two terms (Wang et al., CVPR 2024) on every cross-attention layer of at least 8x8 tokens, for
    each object's colour and shape words: (1 - share of the word's attention inside the object)^2, and the binary
    cross-entropy between the object's coverage and the two words' summed attention probability at each cell."""
    token_terms, pixel_terms = [], []
    for _, m, maps, _ in object_word_maps(processors, covers, positions):
        token_terms += [((1 - inside_share(a, m)) ** 2).mean() for a in maps]
        both = (maps[0] + maps[1]).clamp(1e-6, 1 - 1e-6)
        pixel_terms.append(F.binary_cross_entropy(both, (m > 0.5).float()))
    return torch.stack(token_terms).mean(), torch.stack(pixel_terms).mean()


@torch.no_grad()
def grounding_probe(unet, text, processors, probe):
    """How well the cross-attention maps localise each object's words, on held-out scenes at t = 200, 500, 800:
    `share` = the words' attention inside the object over all their attention (layers of >= 8x8 tokens), `wins` =
    share of the object's cells (coverage > 0.5) where one of its two words has the highest probability among
    tokens 1...75 (what mode=reatco's maps, a sharp softmax over those tokens, turn into its foreground)."""
    latents, ids, covers, positions = probe
    shares, wins = [], []
    for t_value in (200, 500, 800):
        gen = torch.Generator().manual_seed(t_value)
        t = torch.full((len(latents),), t_value)
        xt = add_noise(latents, torch.randn(latents.shape, generator=gen), t, alphas_cumprod())
        unet(xt, t, encoder_hidden_states=text(ids).last_hidden_state)
        for p, m, maps, words in object_word_maps(processors, covers, positions):
            shares += [inside_share(a, m).mean().item() for a in maps]
            best = p[:, :, 1:76].argmax(dim=2) + 1  # [b, r*r]
            hit = (best == words[:, 0:1]) | (best == words[:, 1:2])
            cells = m > 0.5
            if cells.any():
                wins.append(hit[cells].float().mean().item())
    return float(np.mean(shares)), float(np.mean(wins))


def probe_batch(args, tok, scaling, n=48):
    """Held-out scenes (another seed than the training data's), encoded with the trained VAE."""
    images, covers, captions = render_scenes(np.random.default_rng(args.seed + 999), n)
    with torch.no_grad():
        latents = load_vae(args).encode(to_pixels(images)).latent_dist.mean * scaling
    return latents, token_ids(tok, captions), torch.from_numpy(covers), grounding_targets(tok, captions)


def latest_weights(args, stages):
    """The checkpoint of the last of the fine-tuning `stages` (in order) that is asked for (its --<stage>-steps > 0)
    and has one in --work, else the unet stage's."""
    path = os.path.join(args.work, "unet.pt")
    for stage in stages:
        candidate = os.path.join(args.work, stage + ".pt")
        if getattr(args, stage + "_steps") > 0 and os.path.exists(candidate):
            path = candidate
    return path


def continue_training(args, ckpt, base, lr):
    """The UNet, text encoder, optimiser, EMA, parameters, step and elapsed seconds of a fine-tuning stage: resumed
    from its own checkpoint `ckpt` when it exists, else starting from the EMA weights of the checkpoint `base`."""
    resume = os.path.exists(ckpt)
    s = torch.load(ckpt if resume else base, weights_only=False)
    unet, text = build_unet_and_text(args, s["unet"])
    modules = [unet, text]
    params = [p for m in modules for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    ema = EMA(modules, args.ema)
    unet.load_state_dict(s["unet"]), text.load_state_dict(s["text"])
    ema.load_state_dict(s["ema"])
    if resume:
        opt.load_state_dict(s["opt"])
        return unet, text, opt, ema, params, s["step"], s["elapsed"]
    ema.copy_to_models()
    return unet, text, opt, ema, params, 0, 0.0


def finetune_lr(peak, steps, step):
    """A fine-tuning stage's rate: 100 steps of warm-up to `peak`, then a cosine decay to 5 % of it."""
    cosine = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps))
    return peak * min(1.0, (step + 1) / 100) * cosine


def stage_ground(args):
    """Continues the UNet and text encoder from the unet stage's EMA weights with the diffusion loss plus a
    grounding loss on the cross-attention maps (TokenCompose): each object's colour and shape words attend to the
    object. Why: mode=reatco refocuses words by their maps and the plain model's maps hardly localise (docs)."""
    done = os.path.join(args.work, "ground.done")
    if args.ground_steps == 0 or os.path.exists(done):
        return
    tok = tokenizer()
    latents, scaling, ids, empty, captions = diffusion_training_set(args, tok)
    covers = np.load(os.path.join(args.work, "data.npz"))["covers"][:args.unet_images]
    covers_all = torch.from_numpy(covers.astype(np.float32))
    positions_all = grounding_targets(tok, captions)
    ckpt = os.path.join(args.work, "ground.pt")
    unet, text, opt, ema, params, step, elapsed = continue_training(args, ckpt, os.path.join(args.work, "unet.pt"),
                                                                    args.ground_lr)
    processors = []
    for name, module in unet.named_modules():
        if name.endswith("attn2"):
            processors.append(GroundingProcessor())
            module.set_processor(processors[-1])
    probe = probe_batch(args, tok, scaling)
    share, wins = grounding_probe(unet, text, processors, probe)
    log(args.work, f"ground probe at step {step}: share inside {share:.3f}, cells won {wins:.3f}")
    ac, weight = min_snr_weights()
    rng = np.random.default_rng(args.seed + 11 + step)
    gen = torch.Generator().manual_seed(args.seed + 3 + step)
    start, last_save, running = time.time() - elapsed, time.time(), None
    while step < args.ground_steps:
        for g in opt.param_groups:
            g["lr"] = finetune_lr(args.ground_lr, args.ground_steps, step)
        idx, drop, cond, t, noise, xt = noised_batch(rng, gen, latents, ids, empty, args.unet_batch, ac)
        positions = positions_all[idx].clone()
        positions[drop] = -1
        hidden = text(cond).last_hidden_state
        pred = unet(xt, t, encoder_hidden_states=hidden).sample
        diffusion = (((pred - noise) ** 2).mean(dim=(1, 2, 3)) * weight[t]).mean()
        token_term, pixel_term = grounding_loss(processors, covers_all[idx], positions)
        loss = diffusion + args.ground_token_weight * token_term + args.ground_pixel_weight * pixel_term
        apply_step(loss, opt, params, ema, step)
        step += 1
        now = torch.tensor([diffusion.item(), token_term.item(), pixel_term.item()])
        running = now if running is None else 0.98 * running + 0.02 * now
        if step % 50 == 0:
            log(args.work, f"ground step {step} diffusion {running[0]:.4f} token {running[1]:.4f} "
                           f"pixel {running[2]:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                           f"{(time.time() - start) / 60:.1f} min")
        if step % 250 == 0:
            share, wins = grounding_probe(unet, text, processors, probe)
            log(args.work, f"ground probe at step {step} (raw weights): share inside {share:.3f}, cells won {wins:.3f}")
        last_save = save_when_due(last_save, ckpt, unet, text, opt, ema, step, start)
    finish_unet_stage(args, "ground", ckpt, unet, text, opt, ema, step, start)


def render_edit_pairs(rng, n):
    """n single-frame scenes, each drawn twice: as generated, and with one of its objects in a palette colour no
    object of the scene has (what an evaluation clip's target prompt asks). uint8 [n, 2, H, W, 3] and the two
    captions of each."""
    images = np.zeros((n, 2, SIZE, SIZE, 3), np.uint8)
    captions = []
    for i in range(n):
        scene = world.random_scene(rng, SIZE, SIZE, frames=1)
        used = {o["color"] for o in scene["objects"]}
        target = {int(rng.integers(len(scene["objects"]))): str(rng.choice([c for c in world.PALETTE
                                                                              if c not in used]))}
        images[i, 0], _ = world.render(scene)
        images[i, 1], _ = world.render(scene, colors=target)
        captions.append((world.caption(scene), world.caption(scene, target)))
    return images, captions


@torch.no_grad()
def edit_pairs(args, tok, scaling):
    """The edit stage's pairs, rendered with their own seed and encoded with the VAE once (cached in --work):
    latents [n, 2, 4, h, w] (scaled) and token ids [n, 2, 77]."""
    path = os.path.join(args.work, "edit_pairs.pt")
    if not os.path.exists(path):
        t0 = time.time()
        images, captions = render_edit_pairs(np.random.default_rng(args.seed + 2024), args.edit_pairs)
        vae = load_vae(args)
        flat = images.reshape(-1, SIZE, SIZE, 3)
        latents = torch.cat([vae.encode(to_pixels(flat[i:i + 64])).latent_dist.mean
                             for i in range(0, len(flat), 64)])
        ids = token_ids(tok, [c for pair in captions for c in pair])
        torch.save({"latents": latents.view(len(images), 2, *latents.shape[1:]), "ids": ids.view(-1, 2, 77)}, path)
        log(args.work, f"edit pairs: {len(images)} rendered and encoded in {time.time() - t0:.0f} s")
    pairs = torch.load(path)
    return pairs["latents"] * scaling, pairs["ids"]


def stage_edit(args):
    """Continues the UNet and text encoder (from the ground stage's weights if it ran, else the unet stage's) with
    recolouring pairs: a share --edit-share of every batch is a scene noised to t >= --edit-min-t and captioned as
    its recoloured copy (either way round), whose target is the noise that makes the model's estimate of the clean
    latent the copy; the rest is the diffusion loss as in the unet stage (with caption dropout). Why: an edit
    denoises the source's inverted latent with the target prompt, and the base model, which only ever saw noised
    latents of its own caption, keeps the source colour or dissolves the object (docs/shapes-world.md)."""
    done = os.path.join(args.work, "edit.done")
    if args.edit_steps == 0 or os.path.exists(done):
        return
    tok = tokenizer()
    latents, scaling, ids, empty, _ = diffusion_training_set(args, tok)
    pair_latents, pair_ids = edit_pairs(args, tok, scaling)
    ckpt = os.path.join(args.work, "edit.pt")
    unet, text, opt, ema, params, step, elapsed = continue_training(args, ckpt, latest_weights(args, ("ground",)),
                                                                    args.edit_lr)
    ac, weight = min_snr_weights()
    rng = np.random.default_rng(args.seed + 13 + step)
    gen = torch.Generator().manual_seed(args.seed + 5 + step)
    n_edit = int(round(args.unet_batch * args.edit_share))
    start, last_save, running = time.time() - elapsed, time.time(), None
    while step < args.edit_steps:
        for g in opt.param_groups:
            g["lr"] = finetune_lr(args.edit_lr, args.edit_steps, step)
        _, _, cond, t, noise, xt = noised_batch(rng, gen, latents, ids, empty, args.unet_batch - n_edit, ac)
        j = torch.from_numpy(rng.integers(0, len(pair_latents), n_edit))
        flip = torch.from_numpy(rng.integers(0, 2, n_edit))
        source, target = pair_latents[j, flip], pair_latents[j, 1 - flip]
        t_edit = torch.randint(args.edit_min_t, 1000, (n_edit,), generator=gen)
        noise_edit = torch.randn(source.shape, generator=gen)
        a = ac[t_edit].view(-1, 1, 1, 1)
        # x0 estimate (x_t - sqrt(1 - a) eps) / sqrt(a) = target  <=>  eps = noise + sqrt(a / (1 - a)) (source - target)
        goal = torch.cat([noise, noise_edit + (a / (1 - a)).sqrt() * (source - target)])
        xt = torch.cat([xt, add_noise(source, noise_edit, t_edit, ac)])
        t_all = torch.cat([t, t_edit])
        hidden = text(torch.cat([cond, pair_ids[j, 1 - flip]])).last_hidden_state
        pred = unet(xt, t_all, encoder_hidden_states=hidden).sample
        per = ((pred - goal) ** 2).mean(dim=(1, 2, 3)) * weight[t_all]
        loss = per.mean()
        apply_step(loss, opt, params, ema, step)
        step += 1
        now = torch.tensor([per[:len(t)].mean().item(), per[len(t):].mean().item()])
        running = now if running is None else 0.98 * running + 0.02 * now
        if step % 50 == 0:
            log(args.work, f"edit step {step} diffusion {running[0]:.4f} edit {running[1]:.4f} "
                           f"lr {opt.param_groups[0]['lr']:.2e} {(time.time() - start) / 60:.1f} min")
        last_save = save_when_due(last_save, ckpt, unet, text, opt, ema, step, start)
    finish_unet_stage(args, "edit", ckpt, unet, text, opt, ema, step, start)


def stage_from_model(args):
    """--from-model DIR: takes an exported folder's VAE, UNet and text encoder as the vae and unet stages' results
    (F16 weights widened to F32, the UNet's as its own EMA), so later stages (latents, ground) continue from it."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel
    if not os.path.exists(os.path.join(args.work, "vae.done")):
        vae = AutoencoderKL.from_pretrained(os.path.join(args.from_model, "vae")).float()
        save_state(os.path.join(args.work, "vae.pt"), model=vae.state_dict(), step=args.vae_steps, elapsed=0.0,
                   scaling_factor=vae.config.scaling_factor)
        open(os.path.join(args.work, "vae.done"), "w").write("from " + args.from_model)
    if not os.path.exists(os.path.join(args.work, "unet.done")):
        unet = UNet2DConditionModel.from_pretrained(os.path.join(args.from_model, "unet")).float()
        text = CLIPTextModel.from_pretrained(os.path.join(args.from_model, "text_encoder")).float()
        shadow = [p.detach().clone() for m in (unet, text) for p in m.parameters()]
        save_state(os.path.join(args.work, "unet.pt"), unet=unet.state_dict(), text=text.state_dict(), ema=shadow,
                   step=0, elapsed=0.0)
        open(os.path.join(args.work, "unet.done"), "w").write("from " + args.from_model)
    log(args.work, f"from-model: {args.from_model}")


def stage_export(args):
    vae = load_vae(args)
    lat = torch.load(os.path.join(args.work, "latents.pt"))
    vae.register_to_config(scaling_factor=round(lat["scaling_factor"], 5))
    source = latest_weights(args, ("ground", "edit"))
    s = torch.load(source, weights_only=False)
    unet, text = build_unet_and_text(args, s["unet"])
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
    kind = "raw" if args.no_ema else "EMA"
    log(args.work, f"export: {out} ({os.path.basename(source)} step {s['step']}, {kind} weights)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", default="all",
                   choices=["all", "data", "vae", "latents", "unet", "ground", "edit", "export"])
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
    p.add_argument("--unet-layers", type=int, default=1,
                   help="the UNet's layers_per_block (resnets, and transformers in cross-attention blocks) of a "
                        "new UNet; later stages and resumed runs take their checkpoint's")
    p.add_argument("--unet-batch", type=int, default=32)
    p.add_argument("--unet-lr", type=float, default=3e-4)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--ground-steps", type=int, default=0,
                   help="grounding stage steps after the unet stage (0 = none)")
    p.add_argument("--ground-lr", type=float, default=1e-4)
    p.add_argument("--ground-token-weight", type=float, default=0.05)
    p.add_argument("--ground-pixel-weight", type=float, default=0.05)
    p.add_argument("--edit-steps", type=int, default=3000,
                   help="edit stage steps after the unet (and ground) stage (0 = none)")
    p.add_argument("--edit-lr", type=float, default=1e-4)
    p.add_argument("--edit-share", type=float, default=0.5, help="share of each edit-stage batch that is pairs")
    p.add_argument("--edit-min-t", type=int, default=200, help="smallest timestep a pair is noised to")
    p.add_argument("--edit-pairs", type=int, default=6000, help="recolouring pairs rendered for the edit stage")
    p.add_argument("--from-model", help="start from an exported model folder: its VAE and UNet stand for the vae "
                                        "and unet stages (fine-tuning, e.g. the grounding stage)")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights instead of the EMA")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    if args.from_model:
        stage_from_model(args)
    stages = {"data": stage_data, "vae": stage_vae, "latents": stage_latents, "unet": stage_unet,
              "ground": stage_ground, "edit": stage_edit, "export": stage_export}
    for name, fn in stages.items():
        if args.stage in ("all", name):
            fn(args)


if __name__ == "__main__":
    main()
