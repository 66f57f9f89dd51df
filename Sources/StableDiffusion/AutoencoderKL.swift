import Foundation
import TensorKernels

public struct AutoencoderKLConfig: Sendable {
    public var inChannels = 3, outChannels = 3, latentChannels = 4
    public var blockOutChannels = [128, 256, 512, 512]
    public var layersPerBlock = 2
    public var normNumGroups = 32
    public var scalingFactor: Float = 0.18215

    public init() {}
    public init(_ c: JSONConfig) throws {
        inChannels = c.int("in_channels", 3)
        outChannels = c.int("out_channels", 3)
        latentChannels = c.int("latent_channels", 4)
        blockOutChannels = c.ints("block_out_channels", [64])
        layersPerBlock = c.int("layers_per_block", 1)
        normNumGroups = c.int("norm_num_groups", 32)
        scalingFactor = Float(c.double("scaling_factor", 0.18215))
        if c.bool("force_upcast", true) == false || c.has("shift_factor") {
            // Both are fine to ignore for SD 1.x/2.x VAEs (shift_factor is SD3/Flux).
        }
        guard c.bool("use_quant_conv", true), c.bool("use_post_quant_conv", true) else {
            throw ModelError("\(c.source): VAEs without quant_conv/post_quant_conv are not supported")
        }
    }

    /// Pixels per latent pixel (8 for SD).
    public var downscale: Int { 1 << (blockOutChannels.count - 1) }
}

/// The VAE mid block: resnet, single-head attention with its own GroupNorm, resnet (all GroupNorms eps 1e-6).
struct VAEMidBlock {
    let resnet0: ResnetBlock2D, resnet1: ResnetBlock2D
    let norm: GroupNorm
    let attention: Attention

    init(_ w: WeightSource, _ prefix: String, channels: Int, groups: Int) throws {
        resnet0 = try ResnetBlock2D(w, "\(prefix).resnets.0", inC: channels, outC: channels, tembC: nil,
                                    groups: groups, eps: 1e-6)
        norm = try GroupNorm(w, "\(prefix).attentions.0.group_norm", channels, groups: groups, eps: 1e-6)
        attention = try Attention(w, "\(prefix).attentions.0", queryDim: channels, contextDim: channels, heads: 1,
                                  qkvBias: true, legacyNames: true)
        resnet1 = try ResnetBlock2D(w, "\(prefix).resnets.1", inC: channels, outC: channels, tembC: nil,
                                    groups: groups, eps: 1e-6)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = resnet0(x, tembSiLU: nil)
        let (ht, wd) = (h.shape[2], h.shape[3])
        let a = Ops.fromTokens(attention(Ops.toTokens(norm(h))), height: ht, width: wd)
        Ops.addInPlace(a, h)
        return resnet1(a, tembSiLU: nil)
    }
}

/// diffusers `AutoencoderKL`: `encode` gives the latent distribution's mean (unscaled), `decode` takes an
/// unscaled latent.
public final class AutoencoderKL {
    public let config: AutoencoderKLConfig
    public var scalingFactor: Float { config.scalingFactor }

    let encConvIn: Conv2d
    let encDown: [(resnets: [ResnetBlock2D], downsample: Conv2d?)]
    let encMid: VAEMidBlock
    let encNormOut: GroupNorm, encConvOut: Conv2d
    let quantConv: Conv2d, postQuantConv: Conv2d
    let decConvIn: Conv2d
    let decMid: VAEMidBlock
    let decUp: [(resnets: [ResnetBlock2D], upsample: Conv2d?)]
    let decNormOut: GroupNorm, decConvOut: Conv2d

    public convenience init(folder: URL) throws {
        let config = try AutoencoderKLConfig(JSONConfig(url: folder.appendingPathComponent("config.json")))
        let weights = try CheckpointWeights(folder: folder)
        try self.init(config: config, weights: weights)
        try weights.finish()
    }

    public init(config: AutoencoderKLConfig, weights w: WeightSource) throws {
        self.config = config
        let ch = config.blockOutChannels, n = ch.count, g = config.normNumGroups, lpb = config.layersPerBlock
        let lat = config.latentChannels
        encConvIn = try Conv2d(w, "encoder.conv_in", config.inChannels, ch[0], kernel: 3)
        var output = ch[0]
        encDown = try (0..<n).map { i in
            let input = output
            output = ch[i]
            let resnets = try (0..<lpb).map {
                try ResnetBlock2D(w, "encoder.down_blocks.\(i).resnets.\($0)", inC: $0 == 0 ? input : output,
                                  outC: output, tembC: nil, groups: g, eps: 1e-6)
            }
            let ds = i < n - 1 ? try Conv2d(w, "encoder.down_blocks.\(i).downsamplers.0.conv", output, output,
                                            kernel: 3, stride: 2, pad: (0, 0, 1, 1)) : nil
            return (resnets, ds)
        }
        encMid = try VAEMidBlock(w, "encoder.mid_block", channels: ch[n - 1], groups: g)
        encNormOut = try GroupNorm(w, "encoder.conv_norm_out", ch[n - 1], groups: g, eps: 1e-6)
        encConvOut = try Conv2d(w, "encoder.conv_out", ch[n - 1], 2 * lat, kernel: 3)
        quantConv = try Conv2d(w, "quant_conv", 2 * lat, 2 * lat, kernel: 1, padding: 0)
        postQuantConv = try Conv2d(w, "post_quant_conv", lat, lat, kernel: 1, padding: 0)

        let rev = Array(ch.reversed())
        decConvIn = try Conv2d(w, "decoder.conv_in", lat, rev[0], kernel: 3)
        decMid = try VAEMidBlock(w, "decoder.mid_block", channels: rev[0], groups: g)
        output = rev[0]
        decUp = try (0..<n).map { i in
            let prev = output
            output = rev[i]
            let resnets = try (0..<(lpb + 1)).map {
                try ResnetBlock2D(w, "decoder.up_blocks.\(i).resnets.\($0)", inC: $0 == 0 ? prev : output, outC: output,
                                  tembC: nil, groups: g, eps: 1e-6)
            }
            let us = i < n - 1
                ? try Conv2d(w, "decoder.up_blocks.\(i).upsamplers.0.conv", output, output, kernel: 3) : nil
            return (resnets, us)
        }
        decNormOut = try GroupNorm(w, "decoder.conv_norm_out", ch[0], groups: g, eps: 1e-6)
        decConvOut = try Conv2d(w, "decoder.conv_out", ch[0], config.outChannels, kernel: 3)
    }

    /// x [B, 3, H, W] in [−1, 1] (H, W multiples of `downscale`) → latent mean [B, 4, H/8, W/8] (unscaled).
    public func encode(_ x: Tensor) -> Tensor {
        var h = encConvIn(x)
        for block in encDown {
            for r in block.resnets { h = r(h, tembSiLU: nil) }
            if let ds = block.downsample { h = ds(h) }
        }
        h = encMid(h)
        h = quantConv(encConvOut(encNormOut(h, silu: true)))
        return Ops.split(h, dim: 1, sizes: [config.latentChannels, config.latentChannels])[0]
    }

    /// z [B, 4, h, w] (unscaled) → image [B, 3, 8h, 8w] in about [−1, 1].
    public func decode(_ z: Tensor) -> Tensor {
        var h = decConvIn(postQuantConv(z))
        h = decMid(h)
        for block in decUp {
            for r in block.resnets { h = r(h, tembSiLU: nil) }
            if let us = block.upsample { h = us(Ops.upsampleNearest2x(h)) }
        }
        return decConvOut(decNormOut(h, silu: true))
    }
}
