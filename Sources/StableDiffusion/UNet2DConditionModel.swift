import Foundation
import TensorKernels

/// The parts of a diffusers `unet/config.json` that SD 1.x/2.x use.
public struct UNet2DConditionConfig: Sendable {
    public var inChannels = 4, outChannels = 4
    public var blockOutChannels = [320, 640, 1280, 1280]
    public var layersPerBlock = 2
    public var downBlockTypes = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
    public var upBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
    /// Heads per down block (diffusers: `num_attention_heads`, or `attention_head_dim` for SD 1.x/2.x configs).
    public var heads = [8, 8, 8, 8]
    public var crossAttentionDim = 768
    public var useLinearProjection = false
    public var normNumGroups = 32
    public var normEps: Float = 1e-5
    public var transformerLayersPerBlock = 1
    public var flipSinToCos = true
    public var freqShift = 0
    /// `sample_size`: the latent side the model was trained at (SD 1.5: 64, i.e. 512 px); diffusers' pipelines
    /// default to it × the VAE's downscale factor.
    public var sampleSize = 64

    public init() {}

    public init(_ c: JSONConfig) throws {
        blockOutChannels = c.ints("block_out_channels", blockOutChannels)
        let n = blockOutChannels.count
        inChannels = c.int("in_channels", 4)
        outChannels = c.int("out_channels", 4)
        layersPerBlock = c.int("layers_per_block", 2)
        downBlockTypes = c.strings("down_block_types", downBlockTypes)
        upBlockTypes = c.strings("up_block_types", upBlockTypes)
        heads = c.intOrList("num_attention_heads", count: n) ?? c.intOrList("attention_head_dim", count: n)
            ?? Array(repeating: 8, count: n)
        crossAttentionDim = c.int("cross_attention_dim", 1280)
        useLinearProjection = c.bool("use_linear_projection", false)
        normNumGroups = c.int("norm_num_groups", 32)
        normEps = Float(c.double("norm_eps", 1e-5))
        transformerLayersPerBlock = c.intOrList("transformer_layers_per_block", count: n)?.first ?? 1
        flipSinToCos = c.bool("flip_sin_to_cos", true)
        freqShift = c.int("freq_shift", 0)
        sampleSize = c.intOrList("sample_size", count: 1)?.first ?? 64
        let supportedDown = Set(["CrossAttnDownBlock2D", "DownBlock2D"])
        let supportedUp = Set(["CrossAttnUpBlock2D", "UpBlock2D"])
        guard downBlockTypes.count == n, upBlockTypes.count == n, heads.count == n,
              downBlockTypes.allSatisfy(supportedDown.contains), upBlockTypes.allSatisfy(supportedUp.contains) else {
            throw ModelError("\(c.source): unsupported UNet layout "
                                 + "(blocks \(downBlockTypes) / \(upBlockTypes), heads \(heads))")
        }
        let midType = c.string("mid_block_type", "UNetMidBlock2DCrossAttn")
        guard midType == "UNetMidBlock2DCrossAttn" else {
            throw ModelError("\(c.source): unsupported mid_block_type \(midType)")
        }
        if c.has("addition_embed_type") || c.has("class_embed_type") {
            throw ModelError("\(c.source): class/addition embeddings (SDXL-style UNets) are not supported")
        }
    }
}

/// One down or up block: resnets with optional transformers, then an optional resampler.
struct UNetBlock {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]
    let downsampler: Conv2d?
    let upsampler: Conv2d?
}

/// The SD 1.x/2.x denoiser (diffusers `UNet2DConditionModel`), with key names of the checkpoint.
public final class UNet2DConditionModel {
    public let config: UNet2DConditionConfig
    let convIn: Conv2d
    let timeLinear1: Linear, timeLinear2: Linear
    let down: [UNetBlock]
    let midResnets: [ResnetBlock2D]
    let midAttention: Transformer2DModel
    let up: [UNetBlock]
    let normOut: GroupNorm
    let convOut: Conv2d

    public convenience init(folder: URL) throws {
        let config = try UNet2DConditionConfig(JSONConfig(url: folder.appendingPathComponent("config.json")))
        let weights = try CheckpointWeights(folder: folder)
        try self.init(config: config, weights: weights)
        try weights.finish()
    }

    public init(config: UNet2DConditionConfig, weights w: WeightSource) throws {
        self.config = config
        let ch = config.blockOutChannels, n = ch.count
        let temb = ch[0] * 4, groups = config.normNumGroups, eps = config.normEps
        let ctx = config.crossAttentionDim, layers = config.transformerLayersPerBlock
        let linear = config.useLinearProjection
        convIn = try Conv2d(w, "conv_in", config.inChannels, ch[0], kernel: 3)
        timeLinear1 = try Linear(w, "time_embedding.linear_1", ch[0], temb)
        timeLinear2 = try Linear(w, "time_embedding.linear_2", temb, temb)

        var downBlocks: [UNetBlock] = []
        var output = ch[0]
        for i in 0..<n {
            let input = output
            output = ch[i]
            let p = "down_blocks.\(i)"
            let cross = config.downBlockTypes[i] == "CrossAttnDownBlock2D"
            let resnets = try (0..<config.layersPerBlock).map {
                try ResnetBlock2D(w, "\(p).resnets.\($0)", inC: $0 == 0 ? input : output, outC: output, tembC: temb,
                                  groups: groups, eps: eps)
            }
            let attns = cross ? try (0..<config.layersPerBlock).map {
                try Transformer2DModel(w, "\(p).attentions.\($0)", channels: output, heads: config.heads[i],
                                       contextDim: ctx, groups: groups, layers: layers, linearProjection: linear)
            } : []
            let ds = i < n - 1 ? try Conv2d(w, "\(p).downsamplers.0.conv", output, output, kernel: 3, stride: 2) : nil
            downBlocks.append(UNetBlock(resnets: resnets, attentions: attns, downsampler: ds, upsampler: nil))
        }
        down = downBlocks

        let last = ch[n - 1]
        midResnets = try (0..<2).map {
            try ResnetBlock2D(w, "mid_block.resnets.\($0)", inC: last, outC: last, tembC: temb, groups: groups,
                              eps: eps)
        }
        midAttention = try Transformer2DModel(w, "mid_block.attentions.0", channels: last, heads: config.heads[n - 1],
                                              contextDim: ctx, groups: groups, layers: layers, linearProjection: linear)

        let rev = Array(ch.reversed()), revHeads = Array(config.heads.reversed())
        var upBlocks: [UNetBlock] = []
        output = rev[0]
        for i in 0..<n {
            let prev = output
            output = rev[i]
            let input = rev[min(i + 1, n - 1)]
            let p = "up_blocks.\(i)"
            let cross = config.upBlockTypes[i] == "CrossAttnUpBlock2D"
            let count = config.layersPerBlock + 1
            let resnets = try (0..<count).map { j -> ResnetBlock2D in
                let skip = j == count - 1 ? input : output
                let resIn = j == 0 ? prev : output
                return try ResnetBlock2D(w, "\(p).resnets.\(j)", inC: resIn + skip, outC: output, tembC: temb,
                                         groups: groups, eps: eps)
            }
            let attns = cross ? try (0..<count).map {
                try Transformer2DModel(w, "\(p).attentions.\($0)", channels: output, heads: revHeads[i],
                                       contextDim: ctx, groups: groups, layers: layers, linearProjection: linear)
            } : []
            let us = i < n - 1 ? try Conv2d(w, "\(p).upsamplers.0.conv", output, output, kernel: 3) : nil
            upBlocks.append(UNetBlock(resnets: resnets, attentions: attns, downsampler: nil, upsampler: us))
        }
        up = upBlocks
        normOut = try GroupNorm(w, "conv_norm_out", ch[0], groups: groups, eps: eps)
        convOut = try Conv2d(w, "conv_out", ch[0], config.outChannels, kernel: 3)
    }

    /// Sinusoidal timestep embedding [B, C0] (docs/numerics.md).
    func timestepEmbedding(_ timesteps: [Float]) -> Tensor {
        let dim = config.blockOutChannels[0], half = dim / 2
        let t = Tensor(shape: [timesteps.count, dim])
        for (b, ts) in timesteps.enumerated() {
            for i in 0..<half {
                let freq = expf(-logf(10000) * Float(i) / Float(half - config.freqShift))
                let arg = ts * freq
                let (first, second) = config.flipSinToCos ? (cosf(arg), sinf(arg)) : (sinf(arg), cosf(arg))
                t.data[b * dim + i] = first
                t.data[b * dim + half + i] = second
            }
        }
        return t
    }

    /// ε prediction for `sample` [B, 4, h, w] at `timesteps` (one per batch item), conditioned on
    /// `encoderHiddenStates` [B, 77, D]. `hooks` can change self-attention and observe cross-attention.
    public func callAsFunction(_ sample: Tensor, timesteps: [Float], encoderHiddenStates: Tensor,
                               hooks: UNetAttentionHooks? = nil) -> Tensor {
        let b = sample.shape[0]
        precondition(timesteps.count == b && encoderHiddenStates.shape[0] == b,
                     "unet: batch \(b) with \(timesteps.count) timesteps and context \(encoderHiddenStates.shape)")
        let temb = timeLinear2(Ops.silu(timeLinear1(timestepEmbedding(timesteps))))
        let tembSiLU = Ops.silu(temb)
        var h = convIn(sample)
        var skips = [h]
        for block in down {
            for (j, resnet) in block.resnets.enumerated() {
                h = resnet(h, tembSiLU: tembSiLU)
                if !block.attentions.isEmpty { h = block.attentions[j](h, context: encoderHiddenStates, hooks: hooks) }
                skips.append(h)
            }
            if let ds = block.downsampler { h = ds(h); skips.append(h) }
        }
        h = midResnets[0](h, tembSiLU: tembSiLU)
        h = midAttention(h, context: encoderHiddenStates, hooks: hooks)
        h = midResnets[1](h, tembSiLU: tembSiLU)
        for block in up {
            for (j, resnet) in block.resnets.enumerated() {
                h = resnet(Ops.concat([h, skips.removeLast()], dim: 1), tembSiLU: tembSiLU)
                if !block.attentions.isEmpty { h = block.attentions[j](h, context: encoderHiddenStates, hooks: hooks) }
            }
            // Up to the next skip's size: 2× when the latent is a multiple of 2^(up blocks), otherwise diffusers'
            // `upsample_size` path (odd sizes round up on the way down, nearest resize back on the way up).
            if let us = block.upsampler, let skip = skips.last {
                h = us(Ops.upsampleNearest(h, height: skip.shape[2], width: skip.shape[3]))
            }
        }
        return convOut(normOut(h, silu: true))
    }
}
