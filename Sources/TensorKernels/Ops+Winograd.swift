// Winograd F(2×2, 3×3) for 3×3 stride-1 padding-1 convolutions: 16 multiplies per 2×2 output tile instead of 36
// (2.25× fewer), as 16 GEMMs [O, C] × [C, tiles] over all images' tiles, between an input and an output transform.
import Foundation

/// A 3×3 convolution weight in the Winograd domain: U = G·g·Gᵀ, stored [16][O][C].
public final class WinogradWeight: @unchecked Sendable {
    public let outChannels: Int, inChannels: Int
    public let u: Tensor

    public init(_ weight: Tensor) {
        precondition(weight.rank == 4 && weight.shape[2] == 3 && weight.shape[3] == 3,
                     "Winograd weight needs [O, C, 3, 3], got \(weight.shape)")
        let (o, c) = (weight.shape[0], weight.shape[1])
        outChannels = o
        inChannels = c
        u = Tensor(shape: [16, o, c])
        let g: [[Float]] = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
        let ud = u.data, wd = weight.data
        Parallel.forEach(o) { oc in
            for ic in 0..<c {
                let k = wd + (oc * c + ic) * 9
                var t = SIMD16<Float>() // G·g: 4×3 (on the stack: this runs once per (O, C) pair at model load)
                for i in 0..<4 { for j in 0..<3 {
                    t[i * 3 + j] = g[i][0] * k[j] + g[i][1] * k[3 + j] + g[i][2] * k[6 + j]
                } }
                for i in 0..<4 { for j in 0..<4 {
                    ud[((i * 4 + j) * o + oc) * c + ic] =
                        t[i * 3] * g[j][0] + t[i * 3 + 1] * g[j][1] + t[i * 3 + 2] * g[j][2]
                } }
            }
        }
    }
}

extension Ops {
    /// Transform buffers per chunk of tiles stay under this many floats each (16 × C × tiles), unless one tile row
    /// is more.
    public static let winogradChunkFloats = 8 << 20

    /// y = conv2d(x, weight, bias, stride 1, padding 1) with the weight given in the Winograd domain.
    public static func conv2dWinograd(_ x: Tensor, weight: WinogradWeight, bias: Tensor?,
                                      chunkFloats: Int = winogradChunkFloats) -> Tensor {
        return Profiler.measure("conv3x3 winograd") {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        precondition(c == weight.inChannels, "conv2dWinograd: input \(x.shape) against \(weight.inChannels) channels")
        let o = weight.outChannels
        let out = Tensor(uninitializedShape: [n, o, h, w])
        let th = (h + 1) / 2, tw = (w + 1) / 2
        // A chunk is whole images, or when one image's buffers would pass the bound, a band of its tile rows (one
        // 512² VAE image with 256 channels: 1 GB per buffer whole, 32 MB in bands of 8 tile rows). Every tile's
        // output depends on its own input patch only: the same sums in any chunking, up to the GEMM's rounding at
        // another width.
        let floatsPerTileRow = 16 * max(c, o) * tw
        let bandRows = th * floatsPerTileRow > chunkFloats ? max(1, chunkFloats / floatsPerTileRow) : th
        let imagesPerChunk = bandRows < th ? 1 : max(1, chunkFloats / (floatsPerTileRow * th))
        var first = 0, firstRow = 0
        while first < n {
            let images = min(imagesPerChunk, n - first)
            let rows = firstRow..<min(th, firstRow + bandRows)
            let perImage = rows.count * tw
            let p = images * perImage
            let v = Tensor(uninitializedShape: [16, c, p])
            Parallel.forEach(images * c) { task in
                winogradInputTransform(x.data + ((first + task / c) * c + task % c) * h * w, h: h, w: w,
                                       v.data + (task % c) * p + (task / c) * perImage, planeStride: c * p,
                                       tileRows: rows)
            }
            // 16 GEMMs M[ξ] = U[ξ] [O, C] × V[ξ] [C, P], side by side (each single-threaded, whole, on one core):
            // measured faster than one after another each split over the cores (512 px forward: Winograd 1.7 s
            // against 2.1 s, in interleaved runs).
            let m = Tensor(uninitializedShape: [16, o, p])
            _ = blasSingleThreaded
            Parallel.forEach(16) { xi in
                sgemm(weight.u.data + xi * o * c, v.data + xi * c * p, m.data + xi * o * p, m: o, n: p, k: c,
                      transA: false, transB: false, lda: c, ldb: p, ldc: p, alpha: 1, beta: 0)
            }
            Parallel.forEach(images * o) { task in
                winogradOutputTransform(m.data + (task % o) * p + (task / o) * perImage, planeStride: o * p,
                                        out.data + ((first + task / o) * o + task % o) * h * w, h: h, w: w,
                                        bias: bias?.data[task % o] ?? 0, tileRows: rows)
            }
            if rows.upperBound < th {
                firstRow = rows.upperBound
            } else {
                first += images
                firstRow = 0
            }
        }
        return out
        }
    }

    /// V = Bᵀ·d·B for every 4×4 input patch of one channel plane [h][w] (zero outside) in the tile rows `tileRows`,
    /// written to v[ξ·planeStride + tile], tiles in raster order from the band's first.
    /// Bᵀ = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]. Rows are combined over the whole width first; the column
    /// step, after splitting each combined row into even and odd columns, runs 8 tiles at a time.
    static func winogradInputTransform(_ src: UnsafePointer<Float>, h: Int, w: Int, _ v: UnsafeMutablePointer<Float>,
                                       planeStride: Int, tileRows band: Range<Int>) {
        let tw = (w + 1) / 2
        let half = tw + 1 // even / odd columns of the padded row (x = -1 ... 2·tw)
        // 8 rows E_0…E_3, O_0…O_3 of `half` floats, + 8 so a partial last group of tiles can load 8 lanes.
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 8 * half + 8)
        defer { scratch.deallocate() }
        (scratch + 8 * half).initialize(repeating: 0, count: 8)
        for ty in band {
            let y0 = 2 * ty - 1
            func row(_ i: Int) -> UnsafePointer<Float>? { let y = y0 + i; return y >= 0 && y < h ? src + y * w : nil }
            let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3))
            // t_i = (r0 − r2, r1 + r2, r2 − r1, r1 − r3) per column; even padded columns to E_i, odd to O_i.
            for pc in 0..<(2 * half) {
                let xx = pc - 1
                let inside = xx >= 0 && xx < w
                let d0 = inside ? r0?[xx] ?? 0 : 0, d1 = inside ? r1?[xx] ?? 0 : 0
                let d2 = inside ? r2?[xx] ?? 0 : 0, d3 = inside ? r3?[xx] ?? 0 : 0
                let base = (pc & 1) * 4 * half + pc / 2
                scratch[base] = d0 - d2
                scratch[base + half] = d1 + d2
                scratch[base + 2 * half] = d2 - d1
                scratch[base + 3 * half] = d1 - d3
            }
            let rowOut = v + (ty - band.lowerBound) * tw
            for i in 0..<4 {
                let e = UnsafeRawPointer(scratch + i * half), od = UnsafeRawPointer(scratch + (4 + i) * half)
                var tx = 0
                while tx < tw {
                    let lanes = min(8, tw - tx)
                    let e0 = e.loadUnaligned(fromByteOffset: tx * 4, as: SIMD8<Float>.self)
                    let e1 = e.loadUnaligned(fromByteOffset: tx * 4 + 4, as: SIMD8<Float>.self)
                    let d0 = od.loadUnaligned(fromByteOffset: tx * 4, as: SIMD8<Float>.self)
                    let d1 = od.loadUnaligned(fromByteOffset: tx * 4 + 4, as: SIMD8<Float>.self)
                    storeLanes(e0 - e1, rowOut + (4 * i) * planeStride + tx, lanes)
                    storeLanes(d0 + e1, rowOut + (4 * i + 1) * planeStride + tx, lanes)
                    storeLanes(e1 - d0, rowOut + (4 * i + 2) * planeStride + tx, lanes)
                    storeLanes(d0 - d1, rowOut + (4 * i + 3) * planeStride + tx, lanes)
                    tx += lanes
                }
            }
        }
    }

    /// The first `lanes` (≤ 8) lanes of v to p.
    @inline(__always)
    static func storeLanes(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ lanes: Int) {
        if lanes == 8 { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self); return }
        for l in 0..<lanes { p[l] = v[l] }
    }

    /// Y = Aᵀ·M·A + bias for every tile of one output channel in the tile rows `tileRows`, M read from
    /// m[ξ·planeStride + tile] (tiles from the band's first); Aᵀ = [[1,1,1,0],[0,1,-1,-1]]; edge tiles are cropped
    /// to the plane. 8 tiles at a time.
    static func winogradOutputTransform(_ m: UnsafePointer<Float>, planeStride: Int, _ dst: UnsafeMutablePointer<Float>,
                                        h: Int, w: Int, bias: Float, tileRows band: Range<Int>) {
        let tw = (w + 1) / 2
        let b = SIMD8<Float>(repeating: bias)
        for ty in band {
            let q = m + (ty - band.lowerBound) * tw
            let y0 = 2 * ty
            var tx = 0
            while tx < tw {
                let lanes = min(8, tw - tx)
                // M[ξ] for 8 tiles (the last group of a row may be partial: the other lanes are 0 and unused).
                func load(_ xi: Int) -> SIMD8<Float> {
                    let p = q + xi * planeStride + tx
                    if lanes == 8 { return UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }
                    var v = SIMD8<Float>()
                    for l in 0..<lanes { v[l] = p[l] }
                    return v
                }
                // Row sums (Aᵀ·M) per column j, then the column step.
                let a0 = load(0) + load(4) + load(8), a1 = load(1) + load(5) + load(9)
                let a2 = load(2) + load(6) + load(10), a3 = load(3) + load(7) + load(11)
                let c0 = load(4) - load(8) - load(12), c1 = load(5) - load(9) - load(13)
                let c2 = load(6) - load(10) - load(14), c3 = load(7) - load(11) - load(15)
                let even0 = a0 + a1 + a2 + b, odd0 = a1 - a2 - a3 + b
                let even1 = c0 + c1 + c2 + b, odd1 = c1 - c2 - c3 + b
                let row0 = dst + y0 * w, row1 = dst + (y0 + 1) * w
                for l in 0..<lanes {
                    let x0 = 2 * (tx + l)
                    row0[x0] = even0[l]
                    if x0 + 1 < w { row0[x0 + 1] = odd0[l] }
                    if y0 + 1 < h {
                        row1[x0] = even1[l]
                        if x0 + 1 < w { row1[x0 + 1] = odd1[l] }
                    }
                }
                tx += lanes
            }
        }
    }
}
