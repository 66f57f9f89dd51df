import Foundation

extension Ops {
    /// GroupNorm over x [B, C, ...spatial] with per-channel affine; optional fused SiLU.
    public static func groupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float,
                                 silu: Bool = false) -> Tensor {
        return Profiler.measure(silu ? "groupnorm+silu" : "groupnorm") {
        let b = x.shape[0], c = x.shape[1]
        precondition(groups > 0 && c % groups == 0, "groupNorm: \(c) channels in \(groups) groups")
        // Nothing to normalise (batch 0, no channels or an empty image): an empty result, no division by zero.
        guard x.count > 0 else { return Tensor(shape: x.shape) }
        let spatial = x.count / (b * c)
        let cpg = c / groups
        let out = Tensor(shape: x.shape)
        Parallel.forEach(b * groups) { bg in
            let base = bg * cpg * spatial
            let src = x.data + base, dst = out.data + base
            let n = cpg * spatial
            var sum = 0.0
            for i in 0..<n { sum += Double(src[i]) }
            let mean = sum / Double(n)
            var sq = 0.0
            for i in 0..<n { let d = Double(src[i]) - mean; sq += d * d }
            let inv = 1 / (sq / Double(n) + Double(eps)).squareRoot()
            let g = bg % groups
            for cc in 0..<cpg {
                let ch = g * cpg + cc
                let scale = Float(inv) * (weight?.data[ch] ?? 1)
                let shift = (bias?.data[ch] ?? 0) - Float(mean) * scale
                let s = src + cc * spatial, d = dst + cc * spatial
                if silu {
                    siluAffine(s, d, spatial, scale: scale, shift: shift)
                } else {
                    for i in 0..<spatial { d[i] = s[i] * scale + shift }
                }
            }
        }
        return out
        }
    }

    /// LayerNorm over the last dimension.
    public static func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
        return Profiler.measure("layernorm") {
        let c = x.shape.last ?? 0
        // Empty input (no rows or no features): an empty result, no division by zero.
        guard c > 0, x.count > 0 else { return Tensor(shape: x.shape) }
        let rows = x.count / c
        let out = Tensor(shape: x.shape)
        Parallel.forEach(rows) { r in
            let s = x.data + r * c, d = out.data + r * c
            var sum = 0.0
            for i in 0..<c { sum += Double(s[i]) }
            let mean = sum / Double(c)
            var sq = 0.0
            for i in 0..<c { let v = Double(s[i]) - mean; sq += v * v }
            let inv = Float(1 / (sq / Double(c) + Double(eps)).squareRoot())
            let m = Float(mean)
            for i in 0..<c { d[i] = (s[i] - m) * inv * (weight?.data[i] ?? 1) + (bias?.data[i] ?? 0) }
        }
        return out
        }
    }

    /// Softmax of each of `rows` consecutive rows of `length` floats, in place.
    public static func softmaxRows(_ p: UnsafeMutablePointer<Float>, rows: Int, length: Int) {
        for r in 0..<rows { softmaxRow(p + r * length, length) }
    }

    @inline(__always)
    static func softmaxRow(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
        let m = maximum(p, n)
        if m == -Float.infinity { for i in 0..<n { p[i] = 0 }; return }
        let s = expShiftSum(p, n, minus: m)
        let inv = 1 / s
        for i in 0..<n { p[i] *= inv }
    }
}
