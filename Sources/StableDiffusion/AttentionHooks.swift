import TensorKernels

/// Where an attention layer sits in the UNet, for hooks that treat layers differently.
public struct AttentionLayerInfo: Sendable {
    /// diffusers module path, e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn1".
    public let name: String
    public let height: Int
    public let width: Int
    public let channels: Int
    public let heads: Int
    public let isCrossAttention: Bool
}

/// Lets the window editor change self-attention (cross-frame keys/values, token merging) and observe
/// cross-attention maps, without the model knowing about windows.
public protocol UNetAttentionHooks: AnyObject {
    /// Self-attention (attn1): `x` is the normed hidden states [B, N = h·w, C]. Return the key/value *source* tokens
    /// [B, M, C] (the model applies to_k/to_v to them) and optional per-key log weights [B, M] added to the scores
    /// (proportional attention for merged tokens). nil = plain self-attention on `x`.
    func selfAttentionKeyValueSource(_ x: Tensor, layer: AttentionLayerInfo) -> (tokens: Tensor, logWeights: Tensor?)?
    /// Cross-attention (attn2): true to receive head-averaged probabilities [B, N, 77] through `observeCrossAttention`.
    func wantsCrossAttentionProbabilities(_ layer: AttentionLayerInfo) -> Bool
    func observeCrossAttention(_ probabilities: Tensor, layer: AttentionLayerInfo)
}

extension UNetAttentionHooks {
    public func selfAttentionKeyValueSource(_ x: Tensor, layer: AttentionLayerInfo) -> (tokens: Tensor, logWeights: Tensor?)? { nil }
    public func wantsCrossAttentionProbabilities(_ layer: AttentionLayerInfo) -> Bool { false }
    public func observeCrossAttention(_ probabilities: Tensor, layer: AttentionLayerInfo) {}
}

/// diffusers `Attention` as used by SD: to_q/to_k/to_v (bias optional), to_out.0 with bias.
struct Attention {
    let name: String
    let heads: Int
    let toQ: Linear, toK: Linear, toV: Linear, toOut: Linear

    init(_ w: WeightSource, _ prefix: String, queryDim: Int, contextDim: Int, heads: Int, qkvBias: Bool = false,
         legacyNames: Bool = false) throws {
        name = prefix
        self.heads = heads
        func alias(_ old: String) -> [String] { legacyNames ? ["\(prefix).\(old)"] : [] }
        toQ = try Linear(w, "\(prefix).to_q", queryDim, queryDim, bias: qkvBias, aliases: alias("query"))
        toK = try Linear(w, "\(prefix).to_k", contextDim, queryDim, bias: qkvBias, aliases: alias("key"))
        toV = try Linear(w, "\(prefix).to_v", contextDim, queryDim, bias: qkvBias, aliases: alias("value"))
        toOut = try Linear(w, "\(prefix).to_out.0", queryDim, queryDim, aliases: alias("proj_attn"))
    }

    /// x [B, N, C]; context [B, M, D] (nil = self-attention on `kvSource` or x).
    func callAsFunction(_ x: Tensor, context: Tensor? = nil, kvSource: Tensor? = nil, keyLogWeights: Tensor? = nil) -> Tensor {
        let q = toQ(x)
        let src = context ?? kvSource ?? x
        let y = Ops.attention(query: q, key: toK(src), value: toV(src), heads: heads, keyLogWeights: keyLogWeights)
        return toOut(y)
    }

    /// Head-averaged attention probabilities [B, N, M] of x over context.
    func probabilities(_ x: Tensor, context: Tensor) -> Tensor {
        let p = Ops.attentionProbabilities(query: toQ(x), key: toK(context), heads: heads)
        let (b, h, n, m) = (p.shape[0], p.shape[1], p.shape[2], p.shape[3])
        let out = Tensor(shape: [b, n, m])
        for bi in 0..<b { for hi in 0..<h {
            let s = p.data + (bi * h + hi) * n * m, d = out.data + bi * n * m
            for i in 0..<(n * m) { d[i] += s[i] / Float(h) }
        } }
        return out
    }
}
