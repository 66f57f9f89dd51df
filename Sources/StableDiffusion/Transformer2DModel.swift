import TensorKernels

/// BasicTransformerBlock: self-attention (hookable), cross-attention on the prompt, GEGLU feed-forward; pre-LN.
struct BasicTransformerBlock {
    let norm1: LayerNorm, attn1: Attention, norm2: LayerNorm, attn2: Attention, norm3: LayerNorm
    let ffIn: Linear, ffOut: Linear

    init(_ w: WeightSource, _ prefix: String, dim: Int, heads: Int, contextDim: Int) throws {
        norm1 = try LayerNorm(w, "\(prefix).norm1", dim, eps: 1e-5)
        attn1 = try Attention(w, "\(prefix).attn1", queryDim: dim, contextDim: dim, heads: heads)
        norm2 = try LayerNorm(w, "\(prefix).norm2", dim, eps: 1e-5)
        attn2 = try Attention(w, "\(prefix).attn2", queryDim: dim, contextDim: contextDim, heads: heads)
        norm3 = try LayerNorm(w, "\(prefix).norm3", dim, eps: 1e-5)
        ffIn = try Linear(w, "\(prefix).ff.net.0.proj", dim, dim * 8)
        ffOut = try Linear(w, "\(prefix).ff.net.2", dim * 4, dim)
    }

    func callAsFunction(_ x: Tensor, context: Tensor, height: Int, width: Int, hooks: UNetAttentionHooks?) -> Tensor {
        let c = x.shape[2]
        let n1 = norm1(x)
        let info1 = AttentionLayerInfo(name: attn1.name, height: height, width: width, channels: c, heads: attn1.heads,
                                       isCrossAttention: false)
        if let hooks, let propagation = hooks.selfAttentionPropagation(n1, layer: info1) {
            Ops.addInPlace(x, attn1(n1, propagation: propagation))
        } else if let hooks, let groups = hooks.selfAttentionKeyValues(n1, layer: info1) {
            Ops.addInPlace(x, attn1(n1, groups: groups))
        } else {
            Ops.addInPlace(x, attn1(n1))
        }
        let n2 = norm2(x)
        if let hooks {
            let info = AttentionLayerInfo(name: attn2.name, height: height, width: width, channels: c,
                                          heads: attn2.heads, isCrossAttention: true)
            if hooks.wantsCrossAttentionProbabilities(info) {
                hooks.observeCrossAttention(attn2.probabilities(n2, context: context), layer: info)
            }
        }
        Ops.addInPlace(x, attn2(n2, context: context))
        feedForward(x)
        return x
    }

    /// Tokens per feed-forward chunk. The GEGLU's input is 8 channels and its output 4 per channel of the block, per
    /// token: SD 1.5 at 512 px with 16 batch items held 1 GB of them at once, a chunk of 8192 tokens holds 126 MB
    /// (a chunk is at least one whole item: beyond 8192 tokens an item, e.g. 1024 px, is a chunk alone).
    static let feedForwardChunkTokens = 8192

    /// x += ff(norm3(x)), a chunk of whole batch items at a time (every op in it works per token: the same numbers).
    private func feedForward(_ x: Tensor) {
        let (b, n) = (x.shape[0], x.shape[1])
        let items = max(1, Self.feedForwardChunkTokens / max(1, n))
        for start in stride(from: 0, to: b, by: items) {
            let part = x.slice(first: start, length: min(items, b - start))
            Ops.addInPlace(part, ffOut(Ops.geglu(ffIn(norm3(part)))))
        }
    }
}

/// Transformer2DModel (continuous input): GN (eps 1e-6) → proj_in (1×1 conv, or linear with
/// `use_linear_projection`) → transformer blocks → proj_out → residual.
struct Transformer2DModel {
    let norm: GroupNorm
    let linearProjection: Bool
    let projInConv: Conv2d?, projOutConv: Conv2d?
    let projInLinear: Linear?, projOutLinear: Linear?
    let blocks: [BasicTransformerBlock]

    init(_ w: WeightSource, _ prefix: String, channels: Int, heads: Int, contextDim: Int, groups: Int, layers: Int,
         linearProjection: Bool) throws {
        norm = try GroupNorm(w, "\(prefix).norm", channels, groups: groups, eps: 1e-6)
        self.linearProjection = linearProjection
        if linearProjection {
            projInLinear = try Linear(w, "\(prefix).proj_in", channels, channels)
            projOutLinear = try Linear(w, "\(prefix).proj_out", channels, channels)
            projInConv = nil; projOutConv = nil
        } else {
            projInConv = try Conv2d(w, "\(prefix).proj_in", channels, channels, kernel: 1, padding: 0)
            projOutConv = try Conv2d(w, "\(prefix).proj_out", channels, channels, kernel: 1, padding: 0)
            projInLinear = nil; projOutLinear = nil
        }
        blocks = try (0..<layers).map {
            try BasicTransformerBlock(w, "\(prefix).transformer_blocks.\($0)", dim: channels, heads: heads,
                                      contextDim: contextDim)
        }
    }

    func callAsFunction(_ x: Tensor, context: Tensor, hooks: UNetAttentionHooks?) -> Tensor {
        let (h, wd) = (x.shape[2], x.shape[3])
        let normed = norm(x)
        var tokens = linearProjection ? projInLinear!(Ops.toTokens(normed)) : Ops.toTokens(projInConv!(normed))
        for block in blocks { tokens = block(tokens, context: context, height: h, width: wd, hooks: hooks) }
        let out = linearProjection
            ? Ops.fromTokens(projOutLinear!(tokens), height: h, width: wd)
            : projOutConv!(Ops.fromTokens(tokens, height: h, width: wd))
        Ops.addInPlace(out, x)
        return out
    }
}
