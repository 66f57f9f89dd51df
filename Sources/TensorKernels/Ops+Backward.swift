// Reverse mode: the gradient of a loss with respect to a kernel's input, given the gradient with respect to its
// output (dy). Only activations get gradients (mode=reatco steps the latent along ∂loss/∂latent; weights are
// constants). Each takes what its forward took, recomputing what is cheap (norm statistics, attention
// probabilities) rather than keeping it. Checked against finite differences in BackwardKernelTests.
import Foundation

extension Ops {
    /// y = x·Wᵀ + b, weight [out, in] → dx = dy·W, [..., in].
    public static func linearInputGradient(_ dy: Tensor, weight: Tensor) -> Tensor {
        return Profiler.measure("backward linear") {
        let (o, i) = (weight.shape[0], weight.shape[1])
        precondition(dy.shape.last == o, "linearInputGradient: dy \(dy.shape) against weight \(weight.shape)")
        let dx = Tensor(uninitializedShape: Array(dy.shape.dropLast()) + [i])
        gemm(dy.data, weight.data, dx.data, m: dy.count / o, n: i, k: o)
        return dx
        }
    }

    /// y = conv2d(x, weight [O, C, kh, kw], stride, pad) → dx [N, C, h, w] (x's size is given: a strided
    /// convolution may not read x's last rows). Per image cols = Wᵀ·dy, scattered back onto dx (col2im).
    public static func conv2dInputGradient(_ dy: Tensor, weight: Tensor, inputHeight h: Int, inputWidth w: Int,
                                           stride: Int, pad: (top: Int, left: Int, bottom: Int, right: Int))
        -> Tensor {
        return Profiler.measure("backward conv") {
        let (n, o, oh, ow) = (dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3])
        let (c, kh, kw) = (weight.shape[1], weight.shape[2], weight.shape[3])
        precondition(weight.shape[0] == o, "conv2dInputGradient: dy \(dy.shape) against weight \(weight.shape)")
        precondition((h + pad.top + pad.bottom - kh) / stride + 1 == oh
                     && (w + pad.left + pad.right - kw) / stride + 1 == ow,
                     "conv2dInputGradient: dy \(dy.shape) is not the output of a \(h)×\(w) input")
        let plane = oh * ow, kdim = c * kh * kw
        let dx = Tensor(shape: [n, c, h, w])
        if kh == 1 && kw == 1 && stride == 1 && pad == (0, 0, 0, 0) {
            for i in 0..<n {
                gemm(weight.data, dy.data + i * o * plane, dx.data + i * c * plane, m: c, n: plane, k: o,
                     transA: true)
            }
            return dx
        }
        // Images per GEMM: as many as keep the column buffer under im2colChunkFloats, so a wide layer's weight is
        // streamed once per chunk, not once per image (as the forward's im2col does). dy's planes are gathered
        // [O, images·plane] for it.
        let imagesPerChunk = max(1, min(n, im2colChunkFloats / max(kdim * plane, 1)))
        let col = Tensor(uninitializedShape: [kdim, imagesPerChunk * plane])
        let gathered = imagesPerChunk > 1 ? Tensor(uninitializedShape: [o, imagesPerChunk * plane]) : nil
        var first = 0
        while first < n {
            let images = min(imagesPerChunk, n - first), cols = images * plane
            var source = UnsafePointer(dy.data + first * o * plane)
            if let gathered {
                for i in 0..<images { for oc in 0..<o {
                    (gathered.data + oc * cols + i * plane).update(from: dy.data + ((first + i) * o + oc) * plane,
                                                                   count: plane)
                } }
                source = UnsafePointer(gathered.data)
            }
            gemm(weight.data, source, col.data, m: kdim, n: cols, k: o, transA: true)
            Parallel.forEach(images * c) { task in // each task writes its own channel plane
                let (i, ci) = (task / c, task % c)
                let d = dx.data + ((first + i) * c + ci) * h * w
                for ky in 0..<kh { for kx in 0..<kw {
                    let row = col.data + ((ci * kh + ky) * kw + kx) * cols + i * plane
                    for oy in 0..<oh {
                        let iy = oy * stride + ky - pad.top
                        guard iy >= 0 && iy < h else { continue }
                        for ox in 0..<ow {
                            let ix = ox * stride + kx - pad.left
                            if ix >= 0 && ix < w { d[iy * w + ix] += row[oy * ow + ox] }
                        }
                    }
                } }
            }
            first += images
        }
        return dx
        }
    }

    /// y = conv2dWinograd(x, weight) (3×3, stride 1, padding 1) → dx: the same convolution of dy with the kernel
    /// flipped and its channels swapped, whose Winograd weight `inputGradientWeight` builds once per layer.
    public static func conv2dWinogradInputGradient(_ dy: Tensor, inputGradientWeight: WinogradWeight) -> Tensor {
        conv2dWinograd(dy, weight: inputGradientWeight, bias: nil)
    }

    /// y = groupNorm(x, groups, weight, bias, eps) (then SiLU with `silu`) → dx. The statistics are recomputed.
    public static func groupNormInputGradient(_ x: Tensor, _ dy: Tensor, groups: Int, weight: Tensor?, bias: Tensor?,
                                              eps: Float, silu: Bool = false) -> Tensor {
        return Profiler.measure("backward norm") {
        precondition(x.shape == dy.shape, "groupNormInputGradient: x \(x.shape), dy \(dy.shape)")
        let (b, c) = (x.shape[0], x.shape[1])
        guard x.count > 0 else { return Tensor(shape: x.shape) }
        let spatial = x.count / (b * c), cpg = c / groups
        let dx = Tensor(uninitializedShape: x.shape)
        Parallel.forEach(b * groups) { bg in
            let base = bg * cpg * spatial, g = bg % groups
            let (mean, inv) = meanAndInverseDeviation(x.data + base, cpg * spatial, eps: eps)
            // dx̂ = ∂loss/∂(normalised x), kept in dx until the group's sums are known.
            var sum = 0.0, sumTimesNormalised = 0.0
            for cc in 0..<cpg {
                let ch = g * cpg + cc
                let gamma = weight?.data[ch] ?? 1, beta = bias?.data[ch] ?? 0
                let s = x.data + base + cc * spatial, d = dy.data + base + cc * spatial
                let o = dx.data + base + cc * spatial
                for i in 0..<spatial {
                    let normalised = (s[i] - mean) * inv
                    var grad = d[i]
                    if silu { grad *= siluDerivative(gamma * normalised + beta) }
                    let dn = grad * gamma
                    o[i] = dn
                    sum += Double(dn)
                    sumTimesNormalised += Double(dn * normalised)
                }
            }
            let n = Double(cpg * spatial)
            let (meanGrad, meanGradNormalised) = (Float(sum / n), Float(sumTimesNormalised / n))
            let s = x.data + base, o = dx.data + base
            for i in 0..<(cpg * spatial) {
                o[i] = inv * (o[i] - meanGrad - (s[i] - mean) * inv * meanGradNormalised)
            }
        }
        return dx
        }
    }

    /// y = layerNorm(x, weight, bias, eps) over the last dimension → dx.
    public static func layerNormInputGradient(_ x: Tensor, _ dy: Tensor, weight: Tensor?, eps: Float) -> Tensor {
        return Profiler.measure("backward norm") {
        precondition(x.shape == dy.shape, "layerNormInputGradient: x \(x.shape), dy \(dy.shape)")
        let c = x.shape.last ?? 0
        guard c > 0, x.count > 0 else { return Tensor(shape: x.shape) }
        let dx = Tensor(uninitializedShape: x.shape)
        Parallel.forEach(x.count / c) { r in
            let s = x.data + r * c, d = dy.data + r * c, o = dx.data + r * c
            let (mean, inv) = meanAndInverseDeviation(s, c, eps: eps)
            var sum: Float = 0, sumTimesNormalised: Float = 0
            for i in 0..<c {
                let dn = d[i] * (weight?.data[i] ?? 1)
                o[i] = dn
                sum += dn
                sumTimesNormalised += dn * (s[i] - mean) * inv
            }
            let (meanGrad, meanGradNormalised) = (sum / Float(c), sumTimesNormalised / Float(c))
            for i in 0..<c { o[i] = inv * (o[i] - meanGrad - (s[i] - mean) * inv * meanGradNormalised) }
        }
        return dx
        }
    }

    /// Mean and 1/√(variance + eps) of n floats, summed in Double as the forward norms do.
    private static func meanAndInverseDeviation(_ p: UnsafePointer<Float>, _ n: Int, eps: Float) -> (Float, Float) {
        var sum = 0.0
        for i in 0..<n { sum += Double(p[i]) }
        let mean = sum / Double(n)
        var sq = 0.0
        for i in 0..<n { let d = Double(p[i]) - mean; sq += d * d }
        return (Float(mean), Float(1 / (sq / Double(n) + Double(eps)).squareRoot()))
    }

    /// d/dz z·σ(z) = σ(z)·(1 + z·(1 − σ(z))).
    @inline(__always)
    static func siluDerivative(_ z: Float) -> Float {
        let s = 1 / (1 + expf(-z))
        return s * (1 + z * (1 - s))
    }

    /// y = silu(x) → dx.
    public static func siluInputGradient(_ x: Tensor, _ dy: Tensor) -> Tensor {
        precondition(x.count == dy.count, "siluInputGradient: x \(x.shape), dy \(dy.shape)")
        let dx = Tensor(uninitializedShape: x.shape)
        Parallel.forEach(max(1, (x.count + 65535) / 65536)) { part in
            for i in (part * 65536)..<min(x.count, (part + 1) * 65536) {
                dx.data[i] = dy.data[i] * siluDerivative(x.data[i])
            }
        }
        return dx
    }

    /// y = geglu(x): x [..., 2H] = (h, g), y = h·GELU(g) (exact GELU, g·Φ(g)) → dx [..., 2H]:
    /// ∂h = dy·g·Φ(g), ∂g = dy·h·(Φ(g) + g·φ(g)).
    public static func gegluInputGradient(_ x: Tensor, _ dy: Tensor) -> Tensor {
        return Profiler.measure("backward geglu") {
        let c2 = x.shape.last!, c = c2 / 2
        precondition(dy.count * 2 == x.count && dy.shape.last == c, "gegluInputGradient: x \(x.shape), dy \(dy.shape)")
        let dx = Tensor(uninitializedShape: x.shape)
        let inverseRoot2Pi = 1 / Float(2 * Double.pi).squareRoot()
        Parallel.forEach(x.count / max(1, c2)) { r in
            let h = x.data + r * c2, g = h + c, d = dy.data + r * c
            let dh = dx.data + r * c2, dg = dh + c
            for i in 0..<c {
                let cdf = 0.5 * (1 + erff(g[i] / Float(2).squareRoot()))
                let pdf = expf(-0.5 * g[i] * g[i]) * inverseRoot2Pi
                dh[i] = d[i] * g[i] * cdf
                dg[i] = d[i] * h[i] * (cdf + g[i] * pdf)
            }
        }
        return dx
        }
    }

    /// y = upsampleNearest(x, height, width) → dx [B, C, h, w]: each output cell's gradient added to the cell it
    /// copied.
    public static func upsampleNearestInputGradient(_ dy: Tensor, inputHeight h: Int, inputWidth w: Int) -> Tensor {
        let (b, c, oh, ow) = (dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3])
        let rows = nearestSources(input: h, output: oh), cols = nearestSources(input: w, output: ow)
        let dx = Tensor(shape: [b, c, h, w])
        Parallel.forEach(b * c) { bc in
            let s = dy.data + bc * oh * ow, d = dx.data + bc * h * w
            for y in 0..<oh { for xx in 0..<ow { d[rows[y] * w + cols[xx]] += s[y * ow + xx] } }
        }
        return dx
    }

    /// Gradients of multi-head attention O = softmax(s·Q·Kᵀ)·V (s = 1/√d, q [B, Nq, C], k and v [B, Nk, C],
    /// C = heads × d) from dO [B, Nq, C] and, when the probabilities P themselves feed a loss, dP [B, heads, Nq, Nk]
    /// (either may be nil, not both). Per (item, head), in blocks of query rows, P is recomputed; then
    /// dP += dO·Vᵀ, dS = P ⊙ (dP − rowsum(P ⊙ dP)), dQ = s·dS·K, dK += s·dSᵀ·Q, dV += Pᵀ·dO. With
    /// `keyValueGradients` false (keys and values are constants, e.g. the prompt's) dK and dV are not computed.
    public static func attentionGradients(query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
                                          outputGradient dO: Tensor?, probabilityGradient dP: Tensor?,
                                          keyValueGradients: Bool) -> (query: Tensor, key: Tensor?, value: Tensor?) {
        return Profiler.measure("backward attention") {
        let (b, nq, c) = (q.shape[0], q.shape[1], q.shape[2])
        let nk = k.shape[1], d = c / heads
        precondition(k.shape == [b, nk, c] && v.shape == [b, nk, c], "attentionGradients: q \(q.shape) k \(k.shape)")
        precondition(dO != nil || dP != nil, "attentionGradients: no output or probability gradient")
        precondition(dO.map { $0.shape == q.shape } ?? true, "attentionGradients: dO \(dO!.shape)")
        precondition(dP.map { $0.shape == [b, heads, nq, nk] } ?? true, "attentionGradients: dP \(dP!.shape)")
        let scale = 1 / Float(d).squareRoot()
        _ = blasSingleThreaded   // sgemm runs inside the parallel tasks below
        let dq = Tensor(shape: q.shape)
        let dk = keyValueGradients ? Tensor(shape: k.shape) : nil
        let dv = keyValueGradients ? Tensor(shape: v.shape) : nil
        let blockRows = 64
        Parallel.forEach(b * heads) { bh in // a task owns its (item, head) slices of dq, dk and dv
            let bi = bh / heads, h = bh % heads
            let qp = q.data + bi * nq * c + h * d, kp = k.data + bi * nk * c + h * d
            let vp = v.data + bi * nk * c + h * d
            let p = UnsafeMutablePointer<Float>.allocate(capacity: blockRows * nk)
            let g = UnsafeMutablePointer<Float>.allocate(capacity: blockRows * nk)
            defer { p.deallocate(); g.deallocate() }
            var q0 = 0
            while q0 < nq {
                let rows = min(blockRows, nq - q0)
                sgemm(qp + q0 * c, kp, p, m: rows, n: nk, k: d, transA: false, transB: true, lda: c, ldb: c,
                      ldc: nk, alpha: scale, beta: 0)
                for r in 0..<rows { softmaxRow(p + r * nk, nk) }
                if let dP {
                    g.update(from: dP.data + ((bi * heads + h) * nq + q0) * nk, count: rows * nk)
                } else {
                    g.update(repeating: 0, count: rows * nk)
                }
                if let dO {
                    let op = dO.data + (bi * nq + q0) * c + h * d
                    sgemm(op, vp, g, m: rows, n: nk, k: d, transA: false, transB: true, lda: c, ldb: c, ldc: nk,
                          alpha: 1, beta: 1)
                    if let dv {
                        sgemm(p, op, dv.data + bi * nk * c + h * d, m: nk, n: d, k: rows, transA: true, transB: false,
                              lda: nk, ldb: c, ldc: c, alpha: 1, beta: 1)
                    }
                }
                for r in 0..<rows {
                    let pr = p + r * nk, gr = g + r * nk
                    var dot: Float = 0
                    for j in 0..<nk { dot += pr[j] * gr[j] }
                    for j in 0..<nk { gr[j] = pr[j] * (gr[j] - dot) }
                }
                sgemm(g, kp, dq.data + (bi * nq + q0) * c + h * d, m: rows, n: d, k: nk, transA: false,
                      transB: false, lda: nk, ldb: c, ldc: c, alpha: scale, beta: 0)
                if let dk {
                    sgemm(g, qp + q0 * c, dk.data + bi * nk * c + h * d, m: nk, n: d, k: rows, transA: true,
                          transB: false, lda: nk, ldb: c, ldc: c, alpha: scale, beta: 1)
                }
                q0 += rows
            }
        }
        return (dq, dk, dv)
        }
    }
}

extension WinogradWeight {
    /// The 3×3 weight [O, C, 3, 3] back from U = G·g·Gᵀ: g = G⁺·U·G⁺ᵀ with G's left inverse
    /// G⁺ = [[1, 0, 0, 0], [−1, 2, 0, −1], [0, 0, 0, 1]] (G's first and last rows are g's first and last; its second
    /// is their mean with the middle). Exact up to rounding.
    public func spatialWeight() -> Tensor {
        return Profiler.measure("backward weight") {
        let (o, c) = (outChannels, inChannels)
        let out = Tensor(uninitializedShape: [o, c, 3, 3])
        let ud = u.data, od = out.data
        Parallel.forEach(o) { oc in
            for ic in 0..<c {
                // U's 4×4 for this pair (stride o·c between its entries).
                @inline(__always) func at(_ i: Int, _ j: Int) -> Float { ud[((i * 4 + j) * o + oc) * c + ic] }
                // t = G⁺·U (3×4): rows U₀, 2U₁ − U₀ − U₃, U₃.
                var t = SIMD16<Float>()
                for j in 0..<4 {
                    let (u0, u1, u3) = (at(0, j), at(1, j), at(3, j))
                    t[j] = u0
                    t[4 + j] = 2 * u1 - u0 - u3
                    t[8 + j] = u3
                }
                // g = t·G⁺ᵀ (3×3): columns t₀, 2t₁ − t₀ − t₃, t₃.
                let dst = od + (oc * c + ic) * 9
                for i in 0..<3 {
                    let (t0, t1, t3) = (t[i * 4], t[i * 4 + 1], t[i * 4 + 3])
                    dst[i * 3] = t0
                    dst[i * 3 + 1] = 2 * t1 - t0 - t3
                    dst[i * 3 + 2] = t3
                }
            }
        }
        return out
        }
    }

    /// The Winograd weight whose convolution of dy is this one's input gradient: w̃[c, o, i, j] = w[o, c, 2−i, 2−j].
    public func inputGradientWeight() -> WinogradWeight {
        let (o, c) = (outChannels, inChannels)
        let w = spatialWeight(), flipped = Tensor(uninitializedShape: [c, o, 3, 3])
        withExtendedLifetime(w) {
            for oc in 0..<o { for ic in 0..<c { for i in 0..<9 {
                flipped.data[(ic * o + oc) * 9 + i] = w.data[(oc * c + ic) * 9 + 8 - i]
            } } }
        }
        return WinogradWeight(flipped)
    }
}
