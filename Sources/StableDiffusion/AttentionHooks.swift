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

    public init(name: String, height: Int, width: Int, channels: Int, heads: Int, isCrossAttention: Bool) {
        (self.name, self.height, self.width, self.channels, self.heads) = (name, height, width, channels, heads)
        self.isCrossAttention = isCrossAttention
    }
}

/// Keys/values for self-attention chosen by a hook: token groups (each [1, M_g, C], normed hidden states before
/// to_k/to_v) and, per batch item, the groups its queries attend to. Each group's K/V is projected once, however
/// many items use it (cross-frame attention shares the first frame's K/V among all frames).
public struct KeyValueGroups {
    public var tokens: [Tensor]
    /// Per group: log of each token's merged size [1, M_g] (proportional attention), or nil for all-ones.
    public var logWeights: [Tensor?]
    /// Per batch item: indices into `tokens`, concatenated in this order.
    public var itemGroups: [[Int]]
    /// Attention maps from other hidden states (self-attention map reuse, as FateZero and prompt-to-prompt do):
    /// when set, the queries are projected from `mapQueries` [B, N, C] and the keys from `mapKeys` (one tensor per
    /// group, each of its group's shape), while the values stay `tokens`'. Both nil: queries and keys from the
    /// layer's input and `tokens`.
    public var mapQueries: Tensor? = nil
    public var mapKeys: [Tensor]? = nil

    public init(tokens: [Tensor], logWeights: [Tensor?], itemGroups: [[Int]]) {
        precondition(tokens.count == logWeights.count,
                     "KeyValueGroups: \(tokens.count) groups, \(logWeights.count) weights")
        self.tokens = tokens
        self.logWeights = logWeights
        self.itemGroups = itemGroups
    }
}

/// Self-attention computed for some batch items only, the others' outputs propagated from theirs (TokenFlow): item
/// `i` in `sources` gets, for each token p, weightA · out[itemA][indexA[p]] + (1 − weightA) · out[itemB][indexB[p]].
public struct PropagatedSelfAttention {
    public struct Source {
        public var itemA: Int, indexA: [Int32], itemB: Int, indexB: [Int32], weightA: Float
        public init(itemA: Int, indexA: [Int32], itemB: Int, indexB: [Int32], weightA: Float) {
            (self.itemA, self.indexA, self.itemB, self.indexB, self.weightA) = (itemA, indexA, itemB, indexB, weightA)
        }
    }
    /// Items whose self-attention is computed; `groups.itemGroups[j]` are the groups `computed[j]` attends to.
    public var computed: [Int]
    public var groups: KeyValueGroups
    /// Every other item, and where its output comes from (items in `computed`).
    public var sources: [Int: Source]

    public init(computed: [Int], groups: KeyValueGroups, sources: [Int: Source]) {
        precondition(groups.itemGroups.count == computed.count,
                     "PropagatedSelfAttention: groups for \(groups.itemGroups.count) of \(computed.count) items")
        (self.computed, self.groups, self.sources) = (computed, groups, sources)
    }
}

/// Lets the window editor change self-attention (cross-frame keys/values, token merging) and observe
/// cross-attention maps, without the model knowing about windows.
public protocol UNetAttentionHooks: AnyObject {
    /// Self-attention (attn1): `x` is the normed hidden states [B, N = h·w, C]. Return the key/value groups each
    /// batch item attends to; nil = plain self-attention on `x`.
    func selfAttentionKeyValues(_ x: Tensor, layer: AttentionLayerInfo) -> KeyValueGroups?
    /// Self-attention (attn1) run for some items and propagated to the others; asked before
    /// `selfAttentionKeyValues`, nil = not propagated.
    func selfAttentionPropagation(_ x: Tensor, layer: AttentionLayerInfo) -> PropagatedSelfAttention?
    /// Cross-attention (attn2): true to receive head-averaged probabilities [B, N, 77] through `observeCrossAttention`.
    func wantsCrossAttentionProbabilities(_ layer: AttentionLayerInfo) -> Bool
    func observeCrossAttention(_ probabilities: Tensor, layer: AttentionLayerInfo)
}

extension UNetAttentionHooks {
    public func selfAttentionKeyValues(_ x: Tensor, layer: AttentionLayerInfo) -> KeyValueGroups? { nil }
    public func selfAttentionPropagation(_ x: Tensor, layer: AttentionLayerInfo) -> PropagatedSelfAttention? { nil }
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

    /// x [B, N, C]; context [B, M, D] (nil = self-attention on x).
    func callAsFunction(_ x: Tensor, context: Tensor? = nil) -> Tensor {
        let q = toQ(x)
        let src = context ?? x
        let y = Ops.attention(query: q, key: toK(src), value: toV(src), heads: heads)
        return toOut(y)
    }

    /// Self-attention of x [B, N, C] over hook-chosen key/value groups: K/V projected once per group, then each
    /// item's queries attend to the concatenation of its groups (with their log weights).
    func callAsFunction(_ x: Tensor, groups kv: KeyValueGroups) -> Tensor {
        precondition(kv.itemGroups.count == x.shape[0],
                     "KeyValueGroups for \(kv.itemGroups.count) items, batch \(x.shape[0])")
        return self(x, propagation: PropagatedSelfAttention(computed: Array(0..<x.shape[0]), groups: kv, sources: [:]))
    }

    /// Self-attention for `p.computed` items over their groups; every other item's output gathered from theirs
    /// (before to_out, which is affine, so gathering with weights summing to 1 commutes with it).
    func callAsFunction(_ x: Tensor, propagation p: PropagatedSelfAttention) -> Tensor {
        let (b, n, c) = (x.shape[0], x.shape[1], x.shape[2])
        precondition(p.computed.count + p.sources.count == b && p.sources.keys.allSatisfy { !p.computed.contains($0) },
                     "self-attention: \(p.computed.count) computed + \(p.sources.count) propagated items, batch \(b)")
        let kv = p.groups
        precondition((kv.mapQueries == nil) == (kv.mapKeys == nil)
                         && kv.mapQueries.map { $0.shape == x.shape } ?? true
                         && kv.mapKeys.map { $0.map(\.shape) == kv.tokens.map(\.shape) } ?? true,
                     "self-attention: map queries/keys must come together, shaped as the input and the groups")
        let queryInput = kv.mapQueries ?? x
        let xc: Tensor
        if p.computed == Array(0..<b) {
            xc = queryInput
        } else {
            xc = Tensor(uninitializedShape: [p.computed.count, n, c])
            for (j, item) in p.computed.enumerated() {
                (xc.data + j * n * c).update(from: queryInput.data + item * n * c, count: n * c)
            }
        }
        let q = toQ(xc)
        let keys = (kv.mapKeys ?? kv.tokens).map { toK($0) }, values = kv.tokens.map { toV($0) }
        let out = Tensor(shape: [b, n, c])
        for (j, item) in p.computed.enumerated() {
            let g = kv.itemGroups[j]
            let k = g.count == 1 ? keys[g[0]] : Ops.concat(g.map { keys[$0] }, dim: 1)
            let v = g.count == 1 ? values[g[0]] : Ops.concat(g.map { values[$0] }, dim: 1)
            var w: Tensor? = nil
            if g.contains(where: { kv.logWeights[$0] != nil }) {
                w = Ops.concat(g.map { kv.logWeights[$0] ?? Tensor(shape: [1, kv.tokens[$0].shape[1]]) }, dim: 1)
            }
            let y = Ops.attention(query: q.slice(first: j, length: 1), key: k, value: v, heads: heads, keyLogWeights: w)
            out.data.advanced(by: item * n * c).update(from: y.data, count: n * c)
        }
        let computed = Set(p.computed)
        for (item, s) in p.sources {
            precondition(s.indexA.count == n && s.indexB.count == n
                             && computed.contains(s.itemA) && computed.contains(s.itemB),
                         "propagation of item \(item) from items \(s.itemA), \(s.itemB) "
                             + "(\(s.indexA.count) of \(n) tokens)")
            let d = out.data + item * n * c, a = out.data + s.itemA * n * c, bb = out.data + s.itemB * n * c
            let (wa, wb) = (s.weightA, 1 - s.weightA)
            for t in 0..<n {
                let ra = a + Int(s.indexA[t]) * c, rb = bb + Int(s.indexB[t]) * c, rd = d + t * c
                for k in 0..<c { rd[k] = wa * ra[k] + wb * rb[k] }
            }
        }
        return toOut(out)
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
