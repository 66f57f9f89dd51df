// mode=tokenflow: TokenFlow's keyframe editing with feature propagation. At every edit step a random set of keyframes
// (one every `keyframe-interval` frames, random offset) is edited with extended self-attention over all keyframes;
// every other frame's self-attention output is gathered from its two neighbouring keyframes' outputs, at each token's
// nearest neighbour (cosine) in the source video's features, weighted by frame distance. The source features are the
// inversion pass's normed hidden states at the same timestep, so no extra UNet pass is spent on them.
import Foundation
import StableDiffusion
import TensorKernels

final class TokenFlowPropagation {
    let frames: Int
    /// Per edit step: the keyframes (ascending).
    let keyframes: [[Int]]
    /// Per edit step, per self-attention layer: where each non-keyframe frame's tokens come from (frame indices).
    private var fields: [Int: [String: [Int: PropagatedSelfAttention.Source]]] = [:]

    init(frames: Int, steps: Int, interval: Int, seed: UInt64) {
        self.frames = frames
        var rng = SeededRandom(seed: seed ^ 0x746F_6B65_6E66_6C6F)   // "tokenflo"
        let s = max(1, interval)
        keyframes = (0..<steps).map { _ in
            let offset = Int(rng.next() % UInt64(min(s, frames)))
            return Array(stride(from: offset, to: frames, by: s))
        }
    }

    /// The neighbouring keyframes of frame `i` and the weight of the earlier one (1 when there is one neighbour).
    static func neighbours(of i: Int, keyframes: [Int]) -> (a: Int, b: Int, weightA: Float) {
        let before = keyframes.last { $0 <= i }, after = keyframes.first { $0 >= i }
        switch (before, after) {
        case let (a?, b?) where a != b: return (a, b, Float(b - i) / Float(b - a))
        case let (a?, _): return (a, a, 1)
        case let (nil, b?): return (b, b, 1)
        default: preconditionFailure("no keyframes")
        }
    }

    /// Records the source features of one layer for edit step `step`: `x` [frames, N, C], the inversion pass's
    /// normed hidden states at that step's timestep. Finds every non-keyframe token's nearest keyframe tokens.
    func record(_ x: Tensor, layer: String, step: Int) {
        guard step >= 0 && step < keyframes.count else { return }
        let (n, c) = (x.shape[1], x.shape[2])
        precondition(x.shape[0] == frames, "tokenflow: features of \(x.shape[0]) frames, window of \(frames)")
        let keys = keyframes[step]
        var sources: [Int: PropagatedSelfAttention.Source] = [:]
        var unitRows: [Int: [Float]] = [:]   // each frame's rows normalised once per call
        func frame(_ f: Int) -> [Float] {
            if let u = unitRows[f] { return u }
            let u = CosineMatching.normalisedRows(x.data, channels: c, (f * n)..<((f + 1) * n))
            unitRows[f] = u
            return u
        }
        for i in 0..<frames where !keys.contains(i) {
            let (a, b, w) = Self.neighbours(of: i, keyframes: keys)
            let fi = frame(i)
            let ia = CosineMatching.best(fi, frame(a), channels: c).index.map(Int32.init)
            let ib = b == a ? ia : CosineMatching.best(fi, frame(b), channels: c).index.map(Int32.init)
            sources[i] = PropagatedSelfAttention.Source(itemA: a, indexA: ia, itemB: b, indexB: ib, weightA: w)
        }
        fields[step, default: [:]][layer] = sources
    }

    /// The propagation for one layer of the edit's UNet call at `step`, whose batch is `halves` × frames (half-major):
    /// keyframes attend to every keyframe of their half; the rest are gathered within their half. Nil when the
    /// layer's fields were not recorded (then the layer runs as usual).
    func propagation(_ x: Tensor, layer: String, step: Int, halves: Int) -> PropagatedSelfAttention? {
        guard let layerFields = fields[step]?[layer] else { return nil }
        let keys = keyframes[step]
        var computed: [Int] = [], tokens: [Tensor] = [], itemGroups: [[Int]] = []
        var sources: [Int: PropagatedSelfAttention.Source] = [:]
        for hf in 0..<halves {
            let groupBase = tokens.count
            for k in keys {
                computed.append(hf * frames + k)
                tokens.append(x.slice(first: hf * frames + k, length: 1))
            }
            for _ in keys { itemGroups.append(Array(groupBase..<(groupBase + keys.count))) }
            for (i, s) in layerFields {
                var t = s
                t.itemA += hf * frames
                t.itemB += hf * frames
                sources[hf * frames + i] = t
            }
        }
        let groups = KeyValueGroups(tokens: tokens, logWeights: tokens.map { _ in nil }, itemGroups: itemGroups)
        return PropagatedSelfAttention(computed: computed, groups: groups, sources: sources)
    }
}
