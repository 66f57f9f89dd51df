// Winograd F(2×2, 3×3) for 3×3 stride-1 padding-1 convolutions: 16 multiplies per 2×2 output tile instead of 36
// (2.25× fewer), as 16 GEMMs [O, C] × [C, tiles] over all images' tiles, between an input and an output transform.

/// A 3×3 convolution weight in the Winograd domain: U = G·g·Gᵀ, stored [16][O][C].
public final class WinogradWeight: @unchecked Sendable {
    public let outChannels: Int, inChannels: Int
    public let u: Tensor

    public init(_ weight: Tensor) {
        precondition(weight.rank == 4 && weight.shape[2] == 3 && weight.shape[3] == 3, "Winograd weight needs [O, C, 3, 3], got \(weight.shape)")
        let (o, c) = (weight.shape[0], weight.shape[1])
        outChannels = o
        inChannels = c
        u = Tensor(shape: [16, o, c])
        let g: [[Float]] = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
        let ud = u.data, wd = weight.data
        Parallel.forEach(o) { oc in
            for ic in 0..<c {
                let k = wd + (oc * c + ic) * 9
                var t = [Float](repeating: 0, count: 12) // G·g: 4×3
                for i in 0..<4 { for j in 0..<3 { t[i * 3 + j] = g[i][0] * k[j] + g[i][1] * k[3 + j] + g[i][2] * k[6 + j] } }
                for i in 0..<4 { for j in 0..<4 {
                    ud[((i * 4 + j) * o + oc) * c + ic] = t[i * 3] * g[j][0] + t[i * 3 + 1] * g[j][1] + t[i * 3 + 2] * g[j][2]
                } }
            }
        }
    }
}

extension Ops {
    /// Tiles per GEMM batch (bounds the transform buffers: 16 × C × tiles floats).
    static let winogradTilesPerChunk = 4096

    /// y = conv2d(x, weight, bias, stride 1, padding 1) with the weight given in the Winograd domain.
    public static func conv2dWinograd(_ x: Tensor, weight: WinogradWeight, bias: Tensor?) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        precondition(c == weight.inChannels, "conv2dWinograd: input \(x.shape) against \(weight.inChannels) channels")
        let o = weight.outChannels
        let out = Tensor(shape: [n, o, h, w])
        let th = (h + 1) / 2, tw = (w + 1) / 2, perImage = th * tw
        let imagesPerChunk = max(1, winogradTilesPerChunk / perImage)
        var first = 0
        while first < n {
            let images = min(imagesPerChunk, n - first)
            let p = images * perImage
            let v = Tensor(shape: [16, c, p])
            // Input transform: V = Bᵀ·d·B of every 4×4 patch (zero outside the image).
            let xd = x.data, vd = v.data
            Parallel.forEach(images * c) { task in
                let img = task / c, ch = task % c
                let src = xd + ((first + img) * c + ch) * h * w
                let d = UnsafeMutablePointer<Float>.allocate(capacity: 32), t = d + 16
                defer { d.deallocate() }
                for ty in 0..<th { for tx in 0..<tw {
                    let y0 = 2 * ty - 1, x0 = 2 * tx - 1
                    for i in 0..<4 {
                        let yy = y0 + i
                        for j in 0..<4 {
                            let xx = x0 + j
                            d[i * 4 + j] = (yy >= 0 && yy < h && xx >= 0 && xx < w) ? src[yy * w + xx] : 0
                        }
                    }
                    // Bᵀ·d (rows), then ·B (columns). Bᵀ = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]].
                    for j in 0..<4 {
                        t[j] = d[j] - d[8 + j]
                        t[4 + j] = d[4 + j] + d[8 + j]
                        t[8 + j] = d[8 + j] - d[4 + j]
                        t[12 + j] = d[4 + j] - d[12 + j]
                    }
                    let col = img * perImage + ty * tw + tx
                    for i in 0..<4 {
                        let r = t[i * 4], s1 = t[i * 4 + 1], s2 = t[i * 4 + 2], s3 = t[i * 4 + 3]
                        vd[((i * 4 + 0) * c + ch) * p + col] = r - s2
                        vd[((i * 4 + 1) * c + ch) * p + col] = s1 + s2
                        vd[((i * 4 + 2) * c + ch) * p + col] = s2 - s1
                        vd[((i * 4 + 3) * c + ch) * p + col] = s1 - s3
                    }
                } }
            }
            // 16 GEMMs: M[ξ] = U[ξ] [O, C] × V[ξ] [C, P].
            let m = Tensor(shape: [16, o, p])
            for xi in 0..<16 {
                gemm(weight.u.data + xi * o * c, v.data + xi * c * p, m.data + xi * o * p, m: o, n: p, k: c)
            }
            // Output transform: Y = Aᵀ·M·A, Aᵀ = [[1,1,1,0],[0,1,-1,-1]], plus bias; edge tiles are cropped.
            let md = m.data, od = out.data
            Parallel.forEach(images * o) { task in
                let img = task / o, oc = task % o
                let dst = od + ((first + img) * o + oc) * h * w
                let b = bias?.data[oc] ?? 0
                let q = UnsafeMutablePointer<Float>.allocate(capacity: 24), r = q + 16
                defer { q.deallocate() }
                for ty in 0..<th { for tx in 0..<tw {
                    let col = img * perImage + ty * tw + tx
                    for e in 0..<16 { q[e] = md[(e * o + oc) * p + col] }
                    // Aᵀ·q: 2×4
                    for j in 0..<4 {
                        r[j] = q[j] + q[4 + j] + q[8 + j]
                        r[4 + j] = q[4 + j] - q[8 + j] - q[12 + j]
                    }
                    let y0 = 2 * ty, x0 = 2 * tx
                    for i in 0..<2 where y0 + i < h {
                        let v0 = r[i * 4] + r[i * 4 + 1] + r[i * 4 + 2]
                        let v1 = r[i * 4 + 1] - r[i * 4 + 2] - r[i * 4 + 3]
                        dst[(y0 + i) * w + x0] = v0 + b
                        if x0 + 1 < w { dst[(y0 + i) * w + x0 + 1] = v1 + b }
                    }
                } }
            }
            first += images
        }
        return out
    }
}
