#!/usr/bin/env python3
"""Reference gradients through diffusers' UNet (PyTorch autograd) for the Swift gradient tests (mode=reatco).

Run from the repository root with the pinned stack of Tests/Fixtures/requirements.txt, after make_fixtures.py
(it reads the tiny pipelines that script writes):
    /work/venv/bin/python Tests/Fixtures/make_gradient_fixtures.py
Writes, for tiny-sd1 and tiny-sd2, into <model>/reference/:
  grad_maps_L{level}_in/out.safetensors     a loss linear in the cross-attention probabilities of a level's layers:
                                            loss = sum_i sum(weights_i * P_i), P_i [B, heads, h*w, 77] in forward
                                            order; out: loss, grad (d loss / d sample)
  reatco_grad_L{level}_in/out.safetensors   ReAtCo's attention loss, the contract of `ocdedit model reatco-grad`:
                                            in: sample, timestep, encoder_hidden_states, token_indices, regions;
                                            out: loss, grad, maps
Levels: the attn2 layers of down_blocks[L], up_blocks[n-1-L] and, for L = n-1, the mid block.
Every random tensor comes from a fixed seed, so a rerun reproduces the same files.
"""
import math
import os
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "Tests", "Fixtures")


def level_layers(unet, level):
    """attn2 module names of a level, in forward order."""
    n = len(unet.down_blocks)
    names = []
    def collect(prefix, block):
        for i, t in enumerate(getattr(block, "attentions", []) or []):
            for j, _ in enumerate(t.transformer_blocks):
                names.append(f"{prefix}.attentions.{i}.transformer_blocks.{j}.attn2")
    collect(f"down_blocks.{level}", unet.down_blocks[level])
    if level == n - 1:
        collect("mid_block", unet.mid_block)
    collect(f"up_blocks.{n - 1 - level}", unet.up_blocks[n - 1 - level])
    return names


class RecordingProcessor:
    """diffusers' AttnProcessor (explicit softmax) that also keeps the probabilities [B, heads, N, M] in `store`."""
    def __init__(self, store):
        self.store = store

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        b, n, _ = hidden_states.shape
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, None)
        self.store.append(probs.view(b, attn.heads, n, -1))
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        return attn.to_out[1](attn.to_out[0](out))


class CrossFrameProcessor:
    """Self-attention in which frame i attends to the keys/values of frames 0, i - 1 and i, without repeats
    (ocdedit's cross-frame=first-previous)."""
    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        outs = []
        for i in range(hidden_states.shape[0]):
            frames = list(dict.fromkeys([0, max(i - 1, 0), i]))
            context = torch.cat([hidden_states[f] for f in frames], 0)[None]
            query = attn.head_to_batch_dim(attn.to_q(hidden_states[i : i + 1]))
            key = attn.head_to_batch_dim(attn.to_k(context))
            value = attn.head_to_batch_dim(attn.to_v(context))
            probs = attn.get_attention_scores(query, key, None)
            outs.append(attn.batch_to_head_dim(torch.bmm(probs, value)))
        return attn.to_out[1](attn.to_out[0](torch.cat(outs, 0)))


def maps_of(unet, level, sample, timestep, ehs, cross_frame=False):
    from diffusers.models.attention_processor import AttnProcessor
    wanted = set(level_layers(unet, level))
    store = []
    processors = {}
    for key in unet.attn_processors:
        if key[: -len(".processor")] in wanted:
            processors[key] = RecordingProcessor(store)
        elif cross_frame and key.endswith("attn1.processor"):
            processors[key] = CrossFrameProcessor()
        else:
            processors[key] = AttnProcessor()
    unet.set_attn_processor(processors)
    unet(sample, timestep, encoder_hidden_states=ehs)
    assert len(store) == len(wanted), (len(store), wanted)
    return store


def smooth(a):
    """3x3x3 Gaussian over (frame, h, w), sigma 0.5 in ReAtCo's sense: taps (e^-1, 1, e^-1) normalised; reflect
    padding. a [F, h, w]."""
    w = torch.tensor([math.exp(-1), 1.0, math.exp(-1)])
    w = w / w.sum()
    for dim in range(3):
        x = a.movedim(dim, -1)
        shape = x.shape
        x = F.pad(x.reshape(-1, 1, shape[-1]), (1, 1), mode="reflect")
        x = F.conv1d(x, w.view(1, 1, 3)).reshape(shape)
        a = x.movedim(-1, dim)
    return a


def topk_mean(values, count):
    k = max(1, int(math.floor(0.2 * count)))
    return values.flatten().topk(k).values.mean()


def reatco_loss(probs, token_indices, regions):
    """ReAtCo's attention loss (pipeline_split_gen.py), as `ocdedit model reatco-grad` documents it."""
    a = torch.stack([p.mean(1) for p in probs]).mean(0)      # [F, N, 77]: over layers and heads
    a = (a[:, :, 1:76] * 100).softmax(-1)                     # tokens 1...75, x100, softmax over them
    k_words, frames, mh, mw = regions.shape
    maps = torch.stack([smooth(a[:, :, t - 1].reshape(frames, mh, mw)) for t in token_indices.tolist()])
    loss = torch.zeros(())
    for j in range(k_words):
        fg = torch.stack([topk_mean(maps[j, f] * regions[j, f], regions[j, f].sum().item())
                          for f in range(frames)]).mean()
        bg = torch.stack([topk_mean(maps[j, f] * (1 - regions[j, f]), (1 - regions[j, f]).sum().item())
                          for f in range(frames)]).mean()
        loss = loss + torch.relu(1 - fg) + torch.relu(bg)
    return loss, maps


def fixtures(name, seed):
    from diffusers import UNet2DConditionModel
    folder = os.path.join(FIX, name)
    unet = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet"), torch_dtype=torch.float32).eval()
    ref = os.path.join(folder, "reference")
    g = torch.Generator().manual_seed(seed + 300)
    frames, h, w = 3, 8, 12
    n = len(unet.down_blocks)
    for level in range(n):
        sample = torch.randn(frames, 4, h, w, generator=g)
        timestep = torch.tensor([901.0, 500.0, 21.0])
        ehs = torch.randn(frames, 77, 32, generator=g)
        inputs = {"sample": sample, "timestep": timestep, "encoder_hidden_states": ehs}

        # A loss linear in every map: checks the UNet's gradient alone.
        x = sample.clone().requires_grad_(True)
        probs = maps_of(unet, level, x, timestep, ehs)
        weights = [torch.randn(p.shape, generator=g) for p in probs]
        loss = sum((wi * p).sum() for wi, p in zip(weights, probs))
        loss.backward()
        save_file({**inputs, **{f"weights_{i}": wi for i, wi in enumerate(weights)}},
                  os.path.join(ref, f"grad_maps_L{level}_in.safetensors"))
        save_file({"loss": loss.detach().reshape(1), "grad": x.grad.contiguous()},
                  os.path.join(ref, f"grad_maps_L{level}_out.safetensors"))
        # The same loss with cross-frame self-attention (first-previous) in every attn1 layer.
        x = sample.clone().requires_grad_(True)
        probs = maps_of(unet, level, x, timestep, ehs, cross_frame=True)
        loss = sum((wi * p).sum() for wi, p in zip(weights, probs))
        loss.backward()
        save_file({"loss": loss.detach().reshape(1), "grad": x.grad.contiguous()},
                  os.path.join(ref, f"grad_maps_L{level}_cross_frame_out.safetensors"))

        # ReAtCo's loss: two words, each a box region per frame (moving right), the contract's files.
        mh, mw = h >> level, w >> level
        regions = torch.zeros(2, frames, mh, mw)
        for f in range(frames):
            regions[0, f, : mh // 2 + 1, f : f + mw // 2] = 1
            regions[1, f, mh // 2 :, mw // 2 - f // 2 :] = 1
        token_indices = torch.tensor([2, 5], dtype=torch.int64)
        x = sample.clone().requires_grad_(True)
        loss, maps = reatco_loss(maps_of(unet, level, x, timestep, ehs), token_indices, regions)
        loss.backward()
        save_file({**inputs, "token_indices": token_indices, "regions": regions},
                  os.path.join(ref, f"reatco_grad_L{level}_in.safetensors"))
        save_file({"loss": loss.detach().reshape(1), "grad": x.grad.contiguous(), "maps": maps.detach().contiguous()},
                  os.path.join(ref, f"reatco_grad_L{level}_out.safetensors"))
        print(f"{name} level {level}: {len(probs)} maps at {mh}x{mw}, ReAtCo loss {loss.item():.6f}")


if __name__ == "__main__":
    torch.manual_seed(0)
    fixtures("tiny-sd1", 1)
    fixtures("tiny-sd2", 2)
