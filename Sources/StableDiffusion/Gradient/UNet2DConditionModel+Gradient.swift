// ∂loss/∂sample for a loss on the cross-attention probabilities of one level of the UNet (ReAtCo's attention maps):
// the forward runs on a gradient tape only as far as the level's last cross-attention layer, the caller's loss turns
// the probabilities into a value and its gradient, and the tape carries that gradient back to the latent.
// Self-attention is plain (every batch item its own image, as in diffusers) or, with `selfAttentionGroups`,
// across items (cross-frame attention, as the editor's hooks run it).
import TensorKernels

/// The cross-attention probabilities a loss reads, one entry per layer of the level in forward order.
public struct CrossAttentionMaps {
    /// diffusers module paths, e.g. "down_blocks.2.attentions.0.transformer_blocks.0.attn2".
    public let names: [String]
    /// Per layer: softmax probabilities [B, heads, h·w, context tokens].
    public let probabilities: [Tensor]
    /// The level's latent grid.
    public let height: Int, width: Int

    public init(names: [String], probabilities: [Tensor], height: Int, width: Int) {
        (self.names, self.probabilities, self.height, self.width) = (names, probabilities, height, width)
    }
}

extension UNet2DConditionModel {
    /// The cross-attention (attn2) layers of `level`, in forward order: those of down_blocks[level], of the mid block
    /// when level is the last (n − 1), and of up_blocks[n − 1 − level]. All run on the latent downsampled `level`
    /// times.
    public func crossAttentionLayerNames(level: Int) -> [String] {
        let n = down.count
        precondition((0..<n).contains(level), "level \(level) of a UNet with \(n) blocks")
        func names(_ transformers: [Transformer2DModel]) -> [String] {
            transformers.flatMap { $0.blocks.map(\.attn2.name) }
        }
        return names(down[level].attentions) + (level == n - 1 ? names([midAttention]) : [])
            + names(up[n - 1 - level].attentions)
    }

    /// The latent grid of `level` for a latent of `height` × `width`: halved `level` times, rounding up as the
    /// downsamplers do (stride 2, padding 1).
    public func crossAttentionGrid(level: Int, height: Int, width: Int) -> (height: Int, width: Int) {
        var (h, w) = (height, width)
        for _ in 0..<level { (h, w) = ((h + 1) / 2, (w + 1) / 2) }
        return (h, w)
    }

    /// Runs `sample` [B, 4, h, w] forward as far as the last cross-attention layer of `level`, gives `loss` their
    /// probabilities, and returns its value and ∂loss/∂sample [B, 4, h, w]. `loss` returns one gradient per layer,
    /// shaped as its probabilities. `weights` keeps the input-gradient weights of the Winograd convolutions across
    /// calls (one per model). `selfAttentionGroups`: per batch item, the items whose keys/values its self-attention
    /// layers attend to, in order (its own among them); nil: its own only.
    public func crossAttentionGradient(_ sample: Tensor, timesteps: [Float], encoderHiddenStates: Tensor, level: Int,
                                       weights: BackwardWeights, selfAttentionGroups: [[Int]]? = nil,
                                       loss: (CrossAttentionMaps) throws -> (value: Float, gradients: [Tensor]))
        rethrows -> (loss: Float, gradient: Tensor) {
        let b = sample.shape[0]
        precondition(timesteps.count == b && encoderHiddenStates.shape[0] == b,
                     "unet: batch \(b) with \(timesteps.count) timesteps and context \(encoderHiddenStates.shape)")
        let wanted = crossAttentionLayerNames(level: level)
        precondition(!wanted.isEmpty, "unet: level \(level) has no cross-attention layers")
        let tape = GradientTape(weights: weights)
        let input = TapeValue(sample)
        let temb = timeLinear2(Ops.silu(timeLinear1(timestepEmbedding(timesteps))))
        let forward = TapedForward(tape: tape, context: encoderHiddenStates, tembSiLU: Ops.silu(temb),
                                   wanted: Set(wanted), selfAttentionGroups: selfAttentionGroups)
        do {
            try forward.run(self, input)
            preconditionFailure("unet: the forward ended before the cross-attention layers of level \(level)")
        } catch is TapedForward.LastMapReached {}
        catch { preconditionFailure("unet: \(error)") }
        let maps = CrossAttentionMaps(names: forward.mapNames, probabilities: forward.maps.map(\.value),
                                      height: forward.mapHeight, width: forward.mapWidth)
        let (value, gradients) = try loss(maps)
        precondition(gradients.count == forward.maps.count,
                     "unet: \(gradients.count) map gradients for \(forward.maps.count) maps")
        for (map, g) in zip(forward.maps, gradients) { map.accumulate(g) }
        tape.backward()
        return (value, input.gradient ?? Tensor(shape: sample.shape))
    }
}

/// The UNet's forward on a tape, block for block as `UNet2DConditionModel.callAsFunction` without hooks, ending by
/// throwing `LastMapReached` right after the last wanted cross-attention map.
private final class TapedForward {
    struct LastMapReached: Error {}

    let tape: GradientTape
    let context: Tensor, tembSiLU: Tensor
    let wanted: Set<String>
    let selfAttentionGroups: [[Int]]?
    private(set) var maps: [TapeValue] = [], mapNames: [String] = []
    private(set) var mapHeight = 0, mapWidth = 0

    init(tape: GradientTape, context: Tensor, tembSiLU: Tensor, wanted: Set<String>, selfAttentionGroups: [[Int]]?) {
        (self.tape, self.context, self.tembSiLU, self.wanted) = (tape, context, tembSiLU, wanted)
        self.selfAttentionGroups = selfAttentionGroups
    }

    func run(_ unet: UNet2DConditionModel, _ sample: TapeValue) throws {
        var h = tape.conv(sample, unet.convIn)
        var skips = [h]
        for block in unet.down {
            for (j, resnet) in block.resnets.enumerated() {
                h = self.resnet(resnet, h)
                if !block.attentions.isEmpty { h = try transformer(block.attentions[j], h) }
                skips.append(h)
            }
            if let ds = block.downsampler { h = tape.conv(h, ds); skips.append(h) }
        }
        h = resnet(unet.midResnets[0], h)
        h = try transformer(unet.midAttention, h)
        h = resnet(unet.midResnets[1], h)
        for block in unet.up {
            for (j, resnet) in block.resnets.enumerated() {
                h = self.resnet(resnet, tape.concatChannels([h, skips.removeLast()]))
                if !block.attentions.isEmpty { h = try transformer(block.attentions[j], h) }
            }
            if let us = block.upsampler, let skip = skips.last {
                h = tape.conv(tape.upsampleNearest(h, height: skip.shape[2], width: skip.shape[3]), us)
            }
        }
    }

    private func resnet(_ r: ResnetBlock2D, _ x: TapeValue) -> TapeValue {
        var h = tape.conv(tape.groupNorm(x, r.norm1, silu: true), r.conv1)
        if let proj = r.timeEmbProj { h = tape.addChannelBias(h, proj(tembSiLU)) }
        h = tape.conv(tape.groupNorm(h, r.norm2, silu: true), r.conv2)
        return tape.add(h, r.shortcut.map { tape.conv(x, $0) } ?? x)
    }

    private func transformer(_ t: Transformer2DModel, _ x: TapeValue) throws -> TapeValue {
        let (h, w) = (x.shape[2], x.shape[3])
        let normed = tape.groupNorm(x, t.norm)
        var tokens = t.linearProjection ? tape.linear(tape.toTokens(normed), t.projInLinear!)
                                        : tape.toTokens(tape.conv(normed, t.projInConv!))
        for block in t.blocks { tokens = try transformerBlock(block, tokens, height: h, width: w) }
        let out = t.linearProjection
            ? tape.fromTokens(tape.linear(tokens, t.projOutLinear!), height: h, width: w)
            : tape.conv(tape.fromTokens(tokens, height: h, width: w), t.projOutConv!)
        return tape.add(out, x)
    }

    private func transformerBlock(_ block: BasicTransformerBlock, _ input: TapeValue, height: Int,
                                  width: Int) throws -> TapeValue {
        var x = input
        let n1 = tape.layerNorm(x, block.norm1)
        let a1 = block.attn1
        let (q, k, v) = (tape.linear(n1, a1.toQ), tape.linear(n1, a1.toK), tape.linear(n1, a1.toV))
        let selfAttention = selfAttentionGroups.map {
            tape.groupedAttention(query: q, key: k, value: v, heads: a1.heads, groups: $0)
        } ?? tape.attention(query: q, key: k, value: v, heads: a1.heads).output
        x = tape.add(x, tape.linear(selfAttention, a1.toOut))
        let n2 = tape.layerNorm(x, block.norm2)
        let a2 = block.attn2
        let isWanted = wanted.contains(a2.name)
        let cross = tape.attention(query: tape.linear(n2, a2.toQ),
                                   key: TapeValue(a2.toK(context), needsGradient: false),
                                   value: TapeValue(a2.toV(context), needsGradient: false), heads: a2.heads,
                                   probabilities: isWanted)
        if let p = cross.probabilities {
            maps.append(p)
            mapNames.append(a2.name)
            (mapHeight, mapWidth) = (height, width)
            if maps.count == wanted.count { throw LastMapReached() }
        }
        x = tape.add(x, tape.linear(cross.output, a2.toOut))
        let n3 = tape.layerNorm(x, block.norm3)
        return tape.add(x, tape.linear(tape.geglu(tape.linear(n3, block.ffIn)), block.ffOut))
    }
}
