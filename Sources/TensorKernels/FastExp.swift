// Vectorised exp for the hot loops (attention softmax, SiLU): 8 lanes at a time, range reduction to 2^n·e^r with
// |r| ≤ ln2/2 and a degree-6 Taylor polynomial: relative error ≤ 3e-7 (2.5e-7 measured against expf in KernelTests).
// Inputs below −87 give exactly 0 (so −∞ masks stay masks).

extension Ops {
    @inline(__always)
    public static func exp8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let clamped = x.clamped(lowerBound: SIMD8(repeating: -87), upperBound: SIMD8(repeating: 88))
        // Round to the nearest integer with the 1.5·2^23 trick: the sum's low mantissa bits hold n (no per-lane
        // float→int conversion, which Swift's generic SIMD init does lane by lane).
        let magic = SIMD8<Float>(repeating: 12_582_912)
        let t = clamped * 1.442_695_04 + magic
        let n = t - magic
        let r = clamped - n * 0.693_145_75 - n * 1.428_606_8e-6 // Cody–Waite: ln2 split in two parts
        var p = SIMD8<Float>(repeating: 1.0 / 720)
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        let bits = ((unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000) &+ 127) &<< 23
        let scale = unsafeBitCast(bits, to: SIMD8<Float>.self)
        return (p * scale).replacing(with: 0, where: x .< -87)
    }

    /// p[i] ← exp(p[i] − m) for i < n; returns Σ p[i].
    @inline(__always)
    public static func expShiftSum(_ p: UnsafeMutablePointer<Float>, _ n: Int, minus m: Float) -> Float {
        var acc = SIMD8<Float>(repeating: 0)
        let shift = SIMD8<Float>(repeating: m)
        var i = 0
        let raw = UnsafeMutableRawPointer(p)
        while i + 8 <= n {
            let v = exp8(raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) - shift)
            raw.storeBytes(of: v, toByteOffset: i * 4, as: SIMD8<Float>.self)
            acc += v
            i += 8
        }
        var sum = acc.sum()
        if i < n {
            var tail = SIMD8<Float>(repeating: -.infinity)
            for k in 0..<(n - i) { tail[k] = p[i + k] - m }
            let v = exp8(tail)
            for k in 0..<(n - i) { p[i + k] = v[k]; sum += v[k] }
        }
        return sum
    }

    /// max of p[0..<n] (−∞ for n = 0).
    @inline(__always)
    public static func maximum(_ p: UnsafePointer<Float>, _ n: Int, start: Float = -.infinity) -> Float {
        var acc = SIMD8<Float>(repeating: start)
        var i = 0
        let raw = UnsafeRawPointer(p)
        while i + 8 <= n {
            acc = pointwiseMax(acc, raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
            i += 8
        }
        var m = acc.max()
        while i < n { m = max(m, p[i]); i += 1 }
        return m
    }

    /// d[i] = v·sigmoid(v) with v = s[i]·scale + shift, 8 lanes at a time.
    @inline(__always)
    static func siluAffine(_ s: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, _ n: Int, scale: Float, shift: Float) {
        var i = 0
        let src = UnsafeRawPointer(s), dst = UnsafeMutableRawPointer(d)
        let a = SIMD8<Float>(repeating: scale), b = SIMD8<Float>(repeating: shift), one = SIMD8<Float>(repeating: 1)
        while i + 8 <= n {
            let v = src.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) * a + b
            dst.storeBytes(of: v / (one + exp8(-v)), toByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { let v = s[i] * scale + shift; d[i] = v / (1 + exp8(SIMD8(repeating: -v))[0]); i += 1 }
    }
}
