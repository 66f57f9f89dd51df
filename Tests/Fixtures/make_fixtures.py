#!/usr/bin/env python3
"""Generates the reference fixtures the Swift parity tests compare against, and the bundled tiny model.

Run from the repository root with the pinned stack (Tests/Fixtures/requirements.txt):
    /work/venv/bin/python Tests/Fixtures/make_fixtures.py
Writes:
  Tests/Fixtures/clip-bpe/{vocab.json,merges.txt}   the real CLIP BPE files, built from open_clip's vocabulary
  Tests/Fixtures/tokenizer/{prompts.txt,ids.json}   >= 200 prompts and open_clip's ids (context 77)
  Tests/Fixtures/ddim/*.safetensors                  DDIMScheduler step and inversion references
  Tests/Fixtures/tiny-sd1, tiny-sd2                  tiny random diffusers pipelines (F16 weights) + reference/ I/O
  Tests/Fixtures/tome/*.safetensors                  tomesd's bipartite soft matching (no randomness) inputs/outputs
Pass part names (tokenizer ddim tiny tome) to regenerate only those.
Every random tensor comes from a fixed seed, so a rerun reproduces the same files.
"""
import gzip, json, os, shutil, random
import numpy as np
import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "Tests", "Fixtures")
torch.set_grad_enabled(False)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def clip_bpe_files():
    import open_clip
    path = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(l.split()) for l in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out = os.path.join(FIX, "clip-bpe")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    print(f"clip-bpe: {len(vocab)} tokens, {len(merges)} merges")
    return out


def tokenizer_fixture():
    import open_clip
    rng = random.Random(1)
    words = ("a photo of cat dog red blue sports car running on the beach at sunset painting by van gogh in style "
             "high quality 4k detailed portrait woman man's isn't they're we've I'm you'll he'd mountain river "
             "café naïve façade Zürich señor crème brûlée 東京 夜景 猫 🐱 🚗 ✨ résumé über jalapeño").split()
    prompts = [
        "a cat", "A Cat", "  a   cat  ", "a\tcat", "a photo of a red sports car", "it's a dog's life",
        "they're here, we've gone; I'm done!", "hello...world!!!", "x=1+2*3", "café au lait", "naïve façade",
        "東京の夜景", "猫が好き", "🐱🚗✨", "emoji 🐱 in text", "numbers 12345 and 3.14159", "UPPER lower MiXeD",
        "(masterpiece:1.2), best quality", "a,b,c,d", "--ar 16:9", "don't stop", "rock'n'roll", "“quoted” text",
        "ellipsis… dash — en–dash", "tab\tseparated\twords", "multiple     spaces    here", "",
        " ".join(["word"] * 100), " ".join(f"token{i}" for i in range(90)), "a " * 80,
    ]
    while len(prompts) < 220:
        n = rng.randint(1, 30)
        p = " ".join(rng.choice(words) for _ in range(n))
        if rng.random() < 0.3:
            p = p.upper()
        if rng.random() < 0.2:
            p = p.replace(" ", "  ")
        if rng.random() < 0.2:
            p += rng.choice(["!", "?", "...", ",", ";", " :)"])
        prompts.append(p)
    tok = open_clip.get_tokenizer("ViT-L-14")
    ids = tok(prompts).tolist()
    out = os.path.join(FIX, "tokenizer")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "prompts.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(prompts) + "\n")
    with open(os.path.join(out, "ids.json"), "w") as f:
        json.dump(ids, f)
    print(f"tokenizer: {len(prompts)} prompts")


SD1_SCHEDULER = {
    "_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False,
    "steps_offset": 1, "trained_betas": None, "timestep_spacing": "leading",
}


def ddim_fixture():
    from diffusers import DDIMScheduler
    out = os.path.join(FIX, "ddim")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "scheduler_config.json"), "w") as f:
        json.dump(SD1_SCHEDULER, f, indent=2)
    for steps, pred in [(50, "epsilon"), (20, "epsilon"), (20, "v_prediction")]:
        cfg = dict(SD1_SCHEDULER, prediction_type=pred)
        s = DDIMScheduler.from_config(cfg)
        s.set_timesteps(steps)
        g = torch.Generator().manual_seed(steps)
        n = len(s.timesteps)
        samples = torch.randn(n, 2, 4, 4, 6, generator=g)
        outputs = torch.randn(n, 2, 4, 4, 6, generator=g)
        noises = torch.randn(n, 2, 4, 4, 6, generator=g)   # drawn last: the other tensors stay as before
        stepped, stepped_eta, inverted = [], [], []
        ac = s.alphas_cumprod
        for i, t in enumerate(s.timesteps):
            stepped.append(s.step(outputs[i], t, samples[i]).prev_sample)
            stepped_eta.append(s.step(outputs[i], t, samples[i], eta=1.0, variance_noise=noises[i]).prev_sample)
            # Inversion (docs/numerics.md): target t ascending, current = t - 1000/n (alpha[0] when negative).
            tt = int(s.timesteps.flip(0)[i])
            cur = tt - 1000 // steps
            a_cur = ac[cur] if cur >= 0 else ac[0]
            a_t = ac[tt]
            x0 = (samples[i] - (1 - a_cur).sqrt() * outputs[i]) / a_cur.sqrt()
            inverted.append(a_t.sqrt() * x0 + (1 - a_t).sqrt() * outputs[i])
        save_file({
            "timesteps": s.timesteps.to(torch.float32), "alphas_cumprod": ac.to(torch.float32),
            "samples": samples, "model_outputs": outputs,
            "step": torch.stack(stepped), "inversion": torch.stack(inverted),
            "variance_noise": noises, "step_eta_1": torch.stack(stepped_eta),
        }, os.path.join(out, f"ddim_{steps}_{pred}.safetensors"))
    print("ddim: written")


def tome_fixture():
    """tomesd.merge.bipartite_soft_matching_random2d with no_rand=True, merge mode "mean"."""
    from tomesd.merge import bipartite_soft_matching_random2d
    out = os.path.join(FIX, "tome")
    os.makedirs(out, exist_ok=True)
    for name, (h, w, c, ratio) in {"8x8": (8, 8, 16, 0.5), "7x6": (7, 6, 8, 0.3), "12x16": (12, 16, 32, 0.7)}.items():
        g = torch.Generator().manual_seed(h * 100 + w)
        metric = torch.randn(2, h * w, c, generator=g)
        x = torch.randn(2, h * w, c, generator=g)
        r = int(h * w * ratio)
        merge, _ = bipartite_soft_matching_random2d(metric, w, h, 2, 2, r, no_rand=True)
        # tomesd orders destinations by an (unstable) torch argsort of its dst/src buffer: record that order, the
        # same call on the same buffer, so the test can compare destination rows one for one.
        buf = torch.zeros(h, w, dtype=torch.int64)
        buf[0:(h // 2) * 2:2, 0:(w // 2) * 2:2] = -1
        dst_order = buf.reshape(1, -1, 1).argsort(dim=1)[0, :(h // 2) * (w // 2), 0]
        save_file({"metric": metric, "x": x, "merged": merge(x), "dst_order": dst_order,
                   "shape": torch.tensor([h, w, r], dtype=torch.int64)}, os.path.join(out, f"tome_{name}.safetensors"))
    print("tome: written")


def perturb_and_round(model, seed):
    """Give every parameter (also the zero-initialised ones) small random values, rounded to F16."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g) * (0.02 if p.dim() > 1 else 0.05)
        if name.endswith("norm.weight") or ".norm" in name and name.endswith("weight") and p.dim() == 1:
            p.data = 1.0 + noise
        elif p.abs().max() == 0:
            p.data = noise
        else:
            p.data = p.data + noise
        p.data = p.data.half().float()
    return model


def save_pipeline(folder, unet, vae, text_encoder, tokenizer_dir, pad_token, scheduler_cfg):
    if os.path.exists(folder):
        shutil.rmtree(folder)
    unet.to(torch.float16).save_pretrained(os.path.join(folder, "unet"), safe_serialization=True)
    vae.to(torch.float16).save_pretrained(os.path.join(folder, "vae"), safe_serialization=True)
    text_encoder.to(torch.float16).save_pretrained(os.path.join(folder, "text_encoder"), safe_serialization=True)
    for m in (unet, vae, text_encoder):
        m.to(torch.float32)
    tdir = os.path.join(folder, "tokenizer")
    os.makedirs(tdir)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(tokenizer_dir, f), tdir)
    with open(os.path.join(tdir, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": pad_token,
                   "unk_token": "<|endoftext|>"}, f, indent=2)
    with open(os.path.join(tdir, "tokenizer_config.json"), "w") as f:
        json.dump({"model_max_length": 77, "do_lower_case": True, "pad_token": pad_token,
                   "tokenizer_class": "CLIPTokenizer"}, f, indent=2)
    os.makedirs(os.path.join(folder, "scheduler"))
    with open(os.path.join(folder, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(scheduler_cfg, f, indent=2)
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                   "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
                   "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "DDIMScheduler"]},
                  f, indent=2)


def tiny_pipeline(name, sd2, tokenizer_dir, seed):
    from diffusers import UNet2DConditionModel, AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=(2, 4) if sd2 else 4, use_linear_projection=sd2,
        norm_num_groups=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 16, 32, 32), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=8, sample_size=64)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=77, hidden_act="gelu" if sd2 else "quick_gelu", bos_token_id=49406,
        eos_token_id=49407, pad_token_id=0 if sd2 else 49407, projection_dim=32))
    for i, m in enumerate((unet, vae, text_encoder)):
        perturb_and_round(m.eval(), seed * 10 + i)
    folder = os.path.join(FIX, name)
    pad = "!" if sd2 else "<|endoftext|>"
    save_pipeline(folder, unet, vae, text_encoder, tokenizer_dir, pad, SD1_SCHEDULER)

    ref = os.path.join(folder, "reference")
    os.makedirs(ref)
    g = torch.Generator().manual_seed(seed + 100)
    sample = torch.randn(2, 4, 8, 12, generator=g)
    timestep = torch.tensor([10.0, 637.0])
    ehs = torch.randn(2, 77, 32, generator=g)
    save_file({"sample": sample, "timestep": timestep, "encoder_hidden_states": ehs},
              os.path.join(ref, "unet_in.safetensors"))
    save_file({"sample": unet(sample, timestep, encoder_hidden_states=ehs).sample.contiguous()},
              os.path.join(ref, "unet_out.safetensors"))

    image = torch.rand(2, 3, 32, 48, generator=g) * 2 - 1
    save_file({"sample": image}, os.path.join(ref, "vae_encode_in.safetensors"))
    save_file({"latent_mean": vae.encode(image).latent_dist.mean.contiguous()},
              os.path.join(ref, "vae_encode_out.safetensors"))
    latent = torch.randn(2, 4, 4, 6, generator=g)
    save_file({"latent": latent}, os.path.join(ref, "vae_decode_in.safetensors"))
    save_file({"sample": vae.decode(latent).sample.contiguous()}, os.path.join(ref, "vae_decode_out.safetensors"))

    prompts = ["a photo of a cat", "", "A red sports car driving on the beach at sunset, highly detailed!",
               " ".join(["long"] * 90)]
    with open(os.path.join(ref, "prompts.txt"), "w") as f:
        f.write("\n".join(prompts) + "\n")
    tok = CLIPTokenizer.from_pretrained(os.path.join(folder, "tokenizer"))
    ids = tok(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    hidden = text_encoder(ids).last_hidden_state
    save_file({"input_ids": ids.to(torch.int64), "last_hidden_state": hidden.contiguous()},
              os.path.join(ref, "text_encoder_out.safetensors"))
    print(f"{name}: written")
    return folder


def odd_size_fixture(name, seed):
    """The saved tiny UNet on a latent that is not a multiple of 2^(up blocks): diffusers' upsample_size path."""
    from diffusers import UNet2DConditionModel
    folder = os.path.join(FIX, name)
    unet = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet"), torch_dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(seed + 200)
    sample = torch.randn(2, 4, 7, 9, generator=g)
    timestep = torch.tensor([981.0, 41.0])
    ehs = torch.randn(2, 77, 32, generator=g)
    ref = os.path.join(folder, "reference")
    with torch.no_grad():
        out = unet(sample, timestep, encoder_hidden_states=ehs).sample.contiguous()
    save_file({"sample": sample, "timestep": timestep, "encoder_hidden_states": ehs},
              os.path.join(ref, "unet_odd_in.safetensors"))
    save_file({"sample": out}, os.path.join(ref, "unet_odd_out.safetensors"))
    print(f"{name}: odd-size UNet reference written")


def main(parts):
    everything = not parts
    if everything or "tokenizer" in parts or "tiny" in parts:
        tokdir = clip_bpe_files()
    if everything or "tokenizer" in parts:
        tokenizer_fixture()
    if everything or "ddim" in parts:
        ddim_fixture()
    if everything or "tome" in parts:
        tome_fixture()
    if "odd" in parts and "tiny" not in parts:   # "tiny" (and everything) writes it after the pipelines
        odd_size_fixture("tiny-sd1", 1)
    if not (everything or "tiny" in parts):
        return
    sd1 = tiny_pipeline("tiny-sd1", False, tokdir, 1)
    tiny_pipeline("tiny-sd2", True, tokdir, 2)
    odd_size_fixture("tiny-sd1", 1)


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
