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

    /// Reads and checks `c` (a diffusers `unet/config.json`). Refuses, naming the key: other architectures (SDXL,
    /// class- or addition-conditioned UNets, other block types), missing layout keys, wrong types, and sizes the
    /// layers cannot be built with (empty lists, channels not divisible by the groups or heads).
    public init(_ c: JSONConfig) throws {
        try Self.refuseOtherArchitectures(c)
        blockOutChannels = try c.requiredInts("block_out_channels",
                                              example: "a list of ints such as [320, 640, 1280, 1280]")
        let n = blockOutChannels.count
        guard (1...8).contains(n) else {
            throw ModelError("\(c.source): key 'block_out_channels' has \(n) entries, expected 1 to 8")
        }
        try c.check("block_out_channels", blockOutChannels, in: 1...65536)
        downBlockTypes = try c.requiredStrings("down_block_types",
                                               example: "a list such as [\"CrossAttnDownBlock2D\", …, \"DownBlock2D\"]")
        upBlockTypes = try c.requiredStrings("up_block_types",
                                             example: "a list such as [\"UpBlock2D\", …, \"CrossAttnUpBlock2D\"]")
        inChannels = try c.int("in_channels", 4)
        outChannels = try c.int("out_channels", 4)
        try c.check("in_channels", [inChannels], in: 1...4096)
        try c.check("out_channels", [outChannels], in: 1...4096)
        layersPerBlock = try c.int("layers_per_block", 2)
        try c.check("layers_per_block", [layersPerBlock], in: 1...64)
        heads = try c.intOrList("num_attention_heads", count: n) ?? c.intOrList("attention_head_dim", count: n)
            ?? Array(repeating: 8, count: n)
        try c.check("num_attention_heads/attention_head_dim", heads, in: 1...4096)
        crossAttentionDim = try c.int("cross_attention_dim", 1280)
        try c.check("cross_attention_dim", [crossAttentionDim], in: 1...65536)
        useLinearProjection = try c.bool("use_linear_projection", false)
        normNumGroups = try c.int("norm_num_groups", 32)
        try c.check("norm_num_groups", [normNumGroups], in: 1...65536)
        normEps = Float(try c.double("norm_eps", 1e-5))
        let transformerLayers = try c.intOrList("transformer_layers_per_block", count: n) ?? [1]
        try c.check("transformer_layers_per_block", transformerLayers, in: 1...64)
        guard Set(transformerLayers).count == 1 else {
            throw ModelError("\(c.source): transformer_layers_per_block \(transformerLayers) varies per block "
                                 + "(SDXL-style UNets are not supported; only Stable Diffusion 1.x/2.x)")
        }
        transformerLayersPerBlock = transformerLayers[0]
        flipSinToCos = try c.bool("flip_sin_to_cos", true)
        freqShift = try c.int("freq_shift", 0)
        // The timestep embedding has block_out_channels[0] / 2 frequencies, divided by (that − freq_shift): a first
        // entry of 1 has none (its range 0...-1 used to trap, found by Fuzz/FuzzConfig).
        guard blockOutChannels[0] >= 2 else {
            throw ModelError("\(c.source): key 'block_out_channels' has first entry \(blockOutChannels[0]), "
                                 + "at least 2 needed for the timestep embedding")
        }
        try c.check("freq_shift", [freqShift], in: 0...(blockOutChannels[0] / 2 - 1))
        sampleSize = try c.intOrList("sample_size", count: 1)?.first ?? 64
        try c.check("sample_size", [sampleSize], in: 1...65536)
        let supportedDown = Set(["CrossAttnDownBlock2D", "DownBlock2D"])
        let supportedUp = Set(["CrossAttnUpBlock2D", "UpBlock2D"])
        if let other = (downBlockTypes + upBlockTypes).first(where: { !supportedDown.contains($0)
                                                                      && !supportedUp.contains($0) }) {
            throw ModelError("\(c.source): block type \(other) is not supported (only CrossAttnDownBlock2D, "
                                 + "DownBlock2D, CrossAttnUpBlock2D, UpBlock2D of Stable Diffusion 1.x/2.x)")
        }
        guard downBlockTypes.allSatisfy(supportedDown.contains), upBlockTypes.allSatisfy(supportedUp.contains) else {
            throw ModelError("\(c.source): down_block_types must hold down blocks and up_block_types up blocks "
                                 + "(\(downBlockTypes) / \(upBlockTypes))")
        }
        for (key, count) in [("down_block_types", downBlockTypes.count), ("up_block_types", upBlockTypes.count),
                             ("num_attention_heads/attention_head_dim", heads.count)] where count != n {
            throw ModelError("\(c.source): key '\(key)' has \(count) entries, but block_out_channels has \(n)")
        }
        if let bad = blockOutChannels.first(where: { $0 % normNumGroups != 0 }) {
            throw ModelError("\(c.source): block_out_channels entry \(bad) is not divisible by "
                                 + "norm_num_groups \(normNumGroups)")
        }
        for (i, ch) in blockOutChannels.enumerated() where ch % heads[i] != 0 {
            throw ModelError("\(c.source): block_out_channels entry \(ch) is not divisible by its "
                                 + "\(heads[i]) attention heads")
        }
        let midType = try c.string("mid_block_type", "UNetMidBlock2DCrossAttn")
        guard midType == "UNetMidBlock2DCrossAttn" else {
            throw ModelError("\(c.source): mid_block_type \(midType) is not supported (only UNetMidBlock2DCrossAttn)")
        }
    }

    /// Configs of other UNets (SDXL, SDXL refiner, class-conditioned, LCM-distilled, …) that would otherwise load
    /// some of their weights and run wrongly: refused naming the key, and SDXL by name.
    static func refuseOtherArchitectures(_ c: JSONConfig) throws {
        let sd = "only Stable Diffusion 1.x/2.x UNets are supported"
        let className = try c.string("_class_name", "UNet2DConditionModel")
        guard className == "UNet2DConditionModel" else {
            throw ModelError("\(c.source): _class_name \(className) is not supported (\(sd))")
        }
        for key in ["addition_embed_type", "addition_time_embed_dim", "projection_class_embeddings_input_dim"]
            where c.has(key) {
            throw ModelError("\(c.source): \(key) \(c.values[key]!): SDXL-style UNets (added text/time "
                                 + "embeddings) are not supported (\(sd))")
        }
        if let v = c.values["cross_attention_dim"], v is [Any] {
            throw ModelError("\(c.source): cross_attention_dim is a per-block list: this architecture is not "
                                 + "supported (\(sd))")
        }
        if try c.int("cross_attention_dim", 1280) == 2048 {
            throw ModelError("\(c.source): cross_attention_dim 2048 is SDXL's: SDXL is not supported (\(sd))")
        }
        for key in ["class_embed_type", "num_class_embeds", "encoder_hid_dim", "encoder_hid_dim_type",
                    "time_cond_proj_dim", "time_embedding_dim", "timestep_post_act", "time_embedding_act_fn"]
            where c.has(key) {
            throw ModelError("\(c.source): \(key) \(c.values[key]!) is not supported (\(sd))")
        }
        func refuse(_ key: String, _ found: Any, _ supported: String) -> ModelError {
            ModelError("\(c.source): \(key) \(found) is not supported (\(sd), with \(key) \(supported))")
        }
        for (key, value) in [("act_fn", "silu"), ("time_embedding_type", "positional"),
                             ("resnet_time_scale_shift", "default"), ("attention_type", "default")] {
            let found = try c.string(key, value)
            if found != value { throw refuse(key, found, value) }
        }
        for key in ["conv_in_kernel", "conv_out_kernel"] {
            let found = try c.int(key, 3)
            if found != 3 { throw refuse(key, found, "3") }
        }
        for key in ["dual_cross_attention", "center_input_sample"] where try c.bool(key, false) {
            throw refuse(key, true, "false")
        }
        // only_cross_attention: a bool or one per block.
        if let list = c.values["only_cross_attention"] as? [Any] {
            if list.contains(where: { JSONConfig.isBool($0) && ($0 as? Bool) == true }) {
                throw refuse("only_cross_attention", list, "false")
            }
        } else if try c.bool("only_cross_attention", false) {
            throw refuse("only_cross_attention", true, "false")
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
    /// What loading from a folder warned about (stored tensors no layer uses), one line each.
    public internal(set) var loadWarnings: [String] = []
    let convIn: Conv2d
    let timeLinear1: Linear, timeLinear2: Linear
    let down: [UNetBlock]
    let midResnets: [ResnetBlock2D]
    let midAttention: Transformer2DModel
    let up: [UNetBlock]
    let normOut: GroupNorm
    let convOut: Conv2d

    public convenience init(folder: URL) throws {
        let config = try ModelError.loading("unet") {
            try UNet2DConditionConfig(JSONConfig(url: folder.appendingPathComponent("config.json")))
        }
        let weights = try CheckpointWeights(folder: folder, component: "unet")
        try self.init(config: config, weights: weights)
        try weights.finish()
        loadWarnings = weights.warnings
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
    /// `deepFeatures` (DeepCache): `.record` keeps, in the caller's store, the input of the last up block's layer that
    /// the store's branch starts at; `.reuse` runs only `conv_in`, the first `branch` layers of the first down block
    /// and the last `branch` + 1 layers of the last up block, on the stored input, which must come from a call of
    /// the same batch and latent size (UNetDeepFeatures).
    public func callAsFunction(_ sample: Tensor, timesteps: [Float], encoderHiddenStates: Tensor,
                               hooks: UNetAttentionHooks? = nil, deepFeatures: UNetDeepFeatures.Use? = nil) -> Tensor {
        let b = sample.shape[0]
        precondition(timesteps.count == b && encoderHiddenStates.shape[0] == b,
                     "unet: batch \(b) with \(timesteps.count) timesteps and context \(encoderHiddenStates.shape)")
        let temb = timeLinear2(Ops.silu(timeLinear1(timestepEmbedding(timesteps))))
        let tembSiLU = Ops.silu(temb)
        var h = convIn(sample)
        var skips = [h]
        let lastUp = up[up.count - 1]
        if case .reuse(let store) = deepFeatures {
            // The up layers' skips: conv_in's and those of the first down block's layers below them.
            let upLayers = shallowUpLayers(store)
            h = downBlock(down[0], h, skips: &skips, layers: 0..<(upLayers.count - 1), downsample: false,
                          context: encoderHiddenStates, tembSiLU: tembSiLU, hooks: hooks)
            guard let deep = store.features, deep.shape[0] == b, deep.shape[2] == h.shape[2],
                  deep.shape[3] == h.shape[3] else {
                preconditionFailure("unet: deep features of \(store.features?.shape ?? []) for \(h.shape)")
            }
            return output(upBlock(lastUp, deep, skips: &skips, layers: upLayers, context: encoderHiddenStates,
                                  tembSiLU: tembSiLU, hooks: hooks))
        }
        for block in down {
            h = downBlock(block, h, skips: &skips, downsample: true, context: encoderHiddenStates, tembSiLU: tembSiLU,
                          hooks: hooks)
        }
        h = midResnets[0](h, tembSiLU: tembSiLU)
        h = midAttention(h, context: encoderHiddenStates, hooks: hooks)
        h = midResnets[1](h, tembSiLU: tembSiLU)
        for block in up.dropLast() {
            h = upBlock(block, h, skips: &skips, context: encoderHiddenStates, tembSiLU: tembSiLU, hooks: hooks)
        }
        guard case .record(let store) = deepFeatures else {
            return output(upBlock(lastUp, h, skips: &skips, context: encoderHiddenStates, tembSiLU: tembSiLU,
                                  hooks: hooks))
        }
        // The last up block in two parts: the layers a shallow call skips, then (from the kept input) the rest.
        let upLayers = shallowUpLayers(store)
        h = upBlock(lastUp, h, skips: &skips, layers: 0..<upLayers.lowerBound, context: encoderHiddenStates,
                    tembSiLU: tembSiLU, hooks: hooks)
        store.features = h
        return output(upBlock(lastUp, h, skips: &skips, layers: upLayers, context: encoderHiddenStates,
                              tembSiLU: tembSiLU, hooks: hooks))
    }

    /// The last up block's layers that a shallow call of `store`'s branch runs: the last branch + 1, all of them
    /// from a branch of layers_per_block on. A full call keeps the input of the first.
    private func shallowUpLayers(_ store: UNetDeepFeatures) -> Range<Int> {
        let count = up[up.count - 1].resnets.count
        return (count - 1 - min(store.branch, config.layersPerBlock))..<count
    }

    /// Layers `layers` (all by default) of a down block on `input`, each layer's output (and the downsampler's, with
    /// `downsample`) appended to `skips`.
    private func downBlock(_ block: UNetBlock, _ input: Tensor, skips: inout [Tensor], layers: Range<Int>? = nil,
                           downsample: Bool, context: Tensor, tembSiLU: Tensor, hooks: UNetAttentionHooks?) -> Tensor {
        var h = input
        for j in layers ?? block.resnets.indices {
            h = block.resnets[j](h, tembSiLU: tembSiLU)
            if !block.attentions.isEmpty { h = block.attentions[j](h, context: context, hooks: hooks) }
            skips.append(h)
        }
        if downsample, let ds = block.downsampler { h = ds(h); skips.append(h) }
        return h
    }

    /// Layers `layers` (all by default) of an up block on `input`, taking their skips from the end of `skips`; the
    /// upsampler runs after the block's last layer.
    private func upBlock(_ block: UNetBlock, _ input: Tensor, skips: inout [Tensor], layers: Range<Int>? = nil,
                         context: Tensor, tembSiLU: Tensor, hooks: UNetAttentionHooks?) -> Tensor {
        var h = input
        let layers = layers ?? block.resnets.indices
        for j in layers {
            h = block.resnets[j](Ops.concat([h, skips.removeLast()], dim: 1), tembSiLU: tembSiLU)
            if !block.attentions.isEmpty { h = block.attentions[j](h, context: context, hooks: hooks) }
        }
        guard layers.upperBound == block.resnets.count else { return h }
        // Up to the next skip's size: 2× when the latent is a multiple of 2^(up blocks), otherwise diffusers'
        // `upsample_size` path (odd sizes round up on the way down, nearest resize back on the way up).
        if let us = block.upsampler, let skip = skips.last {
            h = us(Ops.upsampleNearest(h, height: skip.shape[2], width: skip.shape[3]))
        }
        return h
    }

    private func output(_ h: Tensor) -> Tensor { convOut(normOut(h, silu: true)) }
}

/// DeepCache's store (Ma et al. 2024, "DeepCache: Accelerating Diffusion Models for Free"): deep features from a full
/// call, which later calls of the same batch and size reuse instead of running the UNet's inner part. Owned by the
/// caller (one per sequence of calls), never by the model.
///
/// The branch is DeepCache's skip branch, counted from the outside: a shallow call recomputes `conv_in`, the first
/// `branch` layers (resnet + transformer) of the first down block and the last `branch` + 1 layers of the last up
/// block, whose skips those give; the stored features are the input of the first of those up layers. 0 is
/// DeepCache's default for Stable Diffusion (only the last layer, on `conv_in`'s skip); `layers_per_block` or more:
/// the whole outer level (the first down block without its downsampler and the whole last up block).
public final class UNetDeepFeatures {
    public enum Use {
        /// A full call that keeps the features its branch starts from.
        case record(UNetDeepFeatures)
        /// A shallow call on the kept features.
        case reuse(UNetDeepFeatures)
    }

    public let branch: Int
    public internal(set) var features: Tensor?

    public init(branch: Int = .max) {
        precondition(branch >= 0, "DeepCache branch \(branch) < 0")
        self.branch = branch
    }

    /// The batch size of the kept features (0: none kept yet).
    public var batchSize: Int { features?.shape[0] ?? 0 }

    /// A store holding the last `count` batch items of this one's features: a shallow call of the conditional half
    /// alone after a full call of classifier-free guidance's two halves (half-major).
    public func lastItems(_ count: Int) -> UNetDeepFeatures {
        let store = UNetDeepFeatures(branch: branch)
        store.features = features.map { $0.slice(first: $0.shape[0] - count, length: count) }
        return store
    }
}
