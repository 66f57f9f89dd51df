import Foundation
import TensorKernels

public struct AutoencoderKLConfig: Sendable {
    public var inChannels = 3, outChannels = 3, latentChannels = 4
    public var blockOutChannels = [128, 256, 512, 512]
    public var layersPerBlock = 2
    public var normNumGroups = 32
    public var scalingFactor: Float = 0.18215

    public init() {}
    /// Reads and checks `c` (a diffusers `vae/config.json`), refusing other autoencoders and unusable sizes by key.
    public init(_ c: JSONConfig) throws {
        let className = try c.string("_class_name", "AutoencoderKL")
        guard className == "AutoencoderKL" else {
            throw ModelError("\(c.source): _class_name \(className) is not supported (only AutoencoderKL)")
        }
        blockOutChannels = try c.requiredInts("block_out_channels",
                                              example: "a list of ints such as [128, 256, 512, 512]")
        guard (1...8).contains(blockOutChannels.count) else {
            throw ModelError("\(c.source): key 'block_out_channels' has \(blockOutChannels.count) entries, "
                                 + "expected 1 to 8")
        }
        try c.check("block_out_channels", blockOutChannels, in: 1...65536)
        inChannels = try c.int("in_channels", 3)
        outChannels = try c.int("out_channels", 3)
        latentChannels = try c.int("latent_channels", 4)
        layersPerBlock = try c.int("layers_per_block", 1)
        normNumGroups = try c.int("norm_num_groups", 32)
        for (key, value) in [("in_channels", inChannels), ("out_channels", outChannels),
                             ("latent_channels", latentChannels), ("norm_num_groups", normNumGroups)] {
            try c.check(key, [value], in: 1...65536)
        }
        try c.check("layers_per_block", [layersPerBlock], in: 1...64)
        scalingFactor = Float(try c.double("scaling_factor", 0.18215))
        // force_upcast and shift_factor (SD3/Flux) are fine to ignore for SD 1.x/2.x VAEs.
        guard try c.bool("use_quant_conv", true), try c.bool("use_post_quant_conv", true) else {
            throw ModelError("\(c.source): VAEs without quant_conv/post_quant_conv are not supported")
        }
        guard try c.bool("mid_block_add_attention", true) else {
            throw ModelError("\(c.source): mid_block_add_attention false is not supported")
        }
        for (key, type) in [("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D")] {
            let types = try c.strings(key, Array(repeating: type, count: blockOutChannels.count))
            guard types.count == blockOutChannels.count, types.allSatisfy({ $0 == type }) else {
                throw ModelError("\(c.source): \(key) \(types) is not supported (expected \(blockOutChannels.count) "
                                     + "× \(type), one per block_out_channels entry)")
            }
        }
        if let bad = blockOutChannels.first(where: { $0 % normNumGroups != 0 }) {
            throw ModelError("\(c.source): block_out_channels entry \(bad) is not divisible by "
                                 + "norm_num_groups \(normNumGroups)")
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
    /// What loading from a folder warned about (stored tensors no layer uses), one line each.
    public internal(set) var loadWarnings: [String] = []

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
        let config = try ModelError.loading("vae") {
            try AutoencoderKLConfig(JSONConfig(url: folder.appendingPathComponent("config.json")))
        }
        let weights = try CheckpointWeights(folder: folder, component: "vae")
        try self.init(config: config, weights: weights)
        try weights.finish()
        loadWarnings = weights.warnings
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
    public func encode(_ x: Tensor) -> Tensor { Self.oneImageAtATime(x, encodeBatch) }

    /// z [B, 4, h, w] (unscaled) → image [B, 3, 8h, 8w] in about [−1, 1].
    public func decode(_ z: Tensor) -> Tensor { Self.oneImageAtATime(z, decodeBatch) }

    /// `body` over each batch item alone, the results concatenated: the same numbers as one batch (every layer works
    /// per item), with a batch item's activations at a time. At 512 px one 128-channel feature map of one image is
    /// 134 MB, and a window of 10 frames in one batch held several GB of them at once; the convolutions fill the
    /// cores within one image at these sizes.
    static func oneImageAtATime(_ x: Tensor, _ body: (Tensor) -> Tensor) -> Tensor {
        let n = x.shape[0]
        guard n > 1 else { return body(x) }
        return Ops.concat((0..<n).map { body(x.slice(first: $0, length: 1)) }, dim: 0)
    }

    func encodeBatch(_ x: Tensor) -> Tensor {
        var h = encConvIn(x)
        for block in encDown {
            for r in block.resnets { h = r(h, tembSiLU: nil) }
            if let ds = block.downsample { h = ds(h) }
        }
        h = encMid(h)
        h = quantConv(encConvOut(encNormOut(h, silu: true)))
        return Ops.split(h, dim: 1, sizes: [config.latentChannels, config.latentChannels])[0]
    }

    func decodeBatch(_ z: Tensor) -> Tensor {
        var h = decConvIn(postQuantConv(z))
        h = decMid(h)
        for block in decUp {
            for r in block.resnets { h = r(h, tembSiLU: nil) }
            if let us = block.upsample { h = us(Ops.upsampleNearest2x(h)) }
        }
        return decConvOut(decNormOut(h, silu: true))
    }
}
