import Foundation

extension Ops {
    static func map(_ x: Tensor, _ f: @escaping (Float) -> Float) -> Tensor {
        let out = Tensor(shape: x.shape)
        let s = x.data, d = out.data
        Parallel.forRanges(x.count) { r in for i in r { d[i] = f(s[i]) } }
        return out
    }

    public static func silu(_ x: Tensor) -> Tensor {
        return Profiler.measure("silu") {
        let out = Tensor(shape: x.shape)
        Parallel.forRanges(x.count) { r in
            siluAffine(x.data + r.lowerBound, out.data + r.lowerBound, r.count, scale: 1, shift: 0)
        }
        return out
        }
    }
    public static func sigmoid(_ x: Tensor) -> Tensor { map(x) { 1 / (1 + expf(-$0)) } }
    /// Exact GELU: x · Φ(x) with the error function.
    public static func gelu(_ x: Tensor) -> Tensor {
        let out = Tensor(uninitializedShape: x.shape)
        Parallel.forRanges(x.count) { r in
            gatedGELU(nil, x.data + r.lowerBound, out.data + r.lowerBound, r.count)
        }
        return out
    }
    /// CLIP's quick_gelu: x · sigmoid(1.702 x).
    public static func quickGelu(_ x: Tensor) -> Tensor { map(x) { $0 / (1 + expf(-1.702 * $0)) } }

    /// x [..., 2C] → h · GELU(gate) with h the first half, gate the second (diffusers GEGLU).
    public static func geglu(_ x: Tensor) -> Tensor {
        return Profiler.measure("geglu") {
        let c2 = x.shape.last!, c = c2 / 2
        let out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [c])
        guard c2 > 0, x.count > 0 else { return out }   // empty input: no division by zero
        let rows = x.count / c2
        Parallel.forEach(rows) { r in gatedGELU(x.data + r * c2, x.data + r * c2 + c, out.data + r * c, c) }
        return out
        }
    }

    /// d[i] = h[i] · g[i] · Φ(g[i]) for i < n (h = nil: 1), 8 lanes at a time: GELU, and GEGLU's gated half.
    @inline(__always)
    static func gatedGELU(_ h: UnsafePointer<Float>?, _ g: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>,
                          _ n: Int) {
        let gr = UnsafeRawPointer(g), dr = UnsafeMutableRawPointer(d)
        var i = 0
        while i + 8 <= n {
            let gv = gr.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            var y = gv * normalCDF8(gv)
            if let h { y *= UnsafeRawPointer(h).loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) }
            dr.storeBytes(of: y, toByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { d[i] = (h?[i] ?? 1) * g[i] * normalCDF8(SIMD8(repeating: g[i]))[0]; i += 1 }
    }

    public static func add(_ a: Tensor, _ b: Tensor) -> Tensor {
        return Profiler.measure("add") {
        precondition(a.count == b.count, "add: \(a.shape) + \(b.shape)")
        let out = Tensor(shape: a.shape)
        let x = a.data, y = b.data, d = out.data
        Parallel.forRanges(a.count) { r in for i in r { d[i] = x[i] + y[i] } }
        return out
        }
    }

    public static func addInPlace(_ a: Tensor, _ b: Tensor) {
        return Profiler.measure("add") {
        precondition(a.count == b.count, "addInPlace: \(a.shape) + \(b.shape)")
        let x = a.data, y = b.data
        Parallel.forRanges(a.count) { r in for i in r { x[i] += y[i] } }
        }
    }

    public static func mul(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.count == b.count, "mul: \(a.shape) * \(b.shape)")
        let out = Tensor(shape: a.shape)
        let x = a.data, y = b.data, d = out.data
        Parallel.forRanges(a.count) { r in for i in r { d[i] = x[i] * y[i] } }
        return out
    }

    public static func scale(_ x: Tensor, _ s: Float) -> Tensor { map(x) { $0 * s } }

    /// Classifier-free guidance, in place on `unconditional`: u + scale·(c − u). Returns `unconditional`.
    @discardableResult
    public static func guide(_ unconditional: Tensor, toward conditional: Tensor, scale: Float) -> Tensor {
        precondition(unconditional.count == conditional.count, "guidance halves of one shape")
        let (u, c) = (unconditional.data, conditional.data)
        for i in 0..<unconditional.count { u[i] += scale * (c[i] - u[i]) }
        return unconditional
    }

    /// x [B, C, ...] += bias [B, C] (or [C]) broadcast over the spatial dimensions.
    public static func addChannelBiasInPlace(_ x: Tensor, _ bias: Tensor) {
        let b = x.shape[0], c = x.shape[1]
        precondition(bias.count == c || bias.count == b * c, "addChannelBias: \(bias.shape) on \(x.shape)")
        guard x.count > 0 else { return }   // empty input (batch 0): nothing to add, no division by zero
        let spatial = x.count / (b * c)
        Parallel.forEach(b * c) { bc in
            let v = bias.count == c ? bias.data[bc % c] : bias.data[bc]
            let p = x.data + bc * spatial
            for i in 0..<spatial { p[i] += v }
        }
    }
}
