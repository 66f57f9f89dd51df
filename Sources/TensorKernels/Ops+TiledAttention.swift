import Foundation

// Attention with its own register-tiled SIMD kernels, for head sizes that are multiples of 8 (every SD head: 40, 80,
// 160 in SD 1.x, 64 in SD 2.x). BLAS is a poor fit here: QKᵀ has an inner dimension of 40 and softmax·V an output
// width of 40, so sgemm spends its time packing (measured: 39 GFLOP/s at 64×64 tokens, a quarter of the roofline).
//
// Per (item, head) K is packed in panels of 16 keys, each transposed [d][16] (contiguous for the tile kernel: a plain
// [d][keys] transpose puts the 40 rows a tile reads 16 KB apart, all in one L1 set), and V as [keys][d] (keys padded
// to 16 with zeros, masked in the softmax). Each task takes 48 query rows and walks key blocks of 256: S = Q·Kᵀ in
// 6×16 tiles, an online softmax per row, then O += P·V in 6×16 tiles. Everything a task touches (S 48 KB, K and V
// blocks 40 KB each at d = 40) stays in L2.

extension Ops {
    static let tiledQueryRows = 48
    static let tiledKeyBlock = 256

    @inline(__always)
    static func fma8(_ acc: SIMD8<Float>, _ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        #if OCDEDIT_FMA
        return acc.addingProduct(a, b)
        #else
        return acc + a * b // without FMA in the target, addingProduct is a libm call per lane
        #endif
    }

    /// softmax(q·kᵀ·scale + w)·v for head sizes d % 8 == 0; shapes as in `attention` (no causal mask).
    static func tiledAttention(query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
                               keyLogWeights: Tensor?) -> Tensor {
        let (b, nq, c) = (q.shape[0], q.shape[1], q.shape[2])
        let nk = k.shape[1], d = c / heads
        let nkPad = (nk + 15) / 16 * 16
        let scale = 1 / Float(d).squareRoot()
        // Packed K (transposed) and V per (item, head).
        let kt = UnsafeMutablePointer<Float>.allocate(capacity: b * heads * d * nkPad)
        let vp = UnsafeMutablePointer<Float>.allocate(capacity: b * heads * nkPad * d)
        defer { kt.deallocate(); vp.deallocate() }
        Parallel.forEach(b * heads) { bh in
            let bi = bh / heads, h = bh % heads
            let ktd = kt + bh * d * nkPad, vpd = vp + bh * nkPad * d
            for j in 0..<nk {
                let ks = k.data + (bi * nk + j) * c + h * d, vs = v.data + (bi * nk + j) * c + h * d
                for e in 0..<d { ktd[((j >> 4) * d + e) * 16 + (j & 15)] = ks[e] }
                (vpd + j * d).update(from: vs, count: d)
            }
            for j in nk..<nkPad {
                for e in 0..<d { ktd[((j >> 4) * d + e) * 16 + (j & 15)] = 0 }
                (vpd + j * d).update(repeating: 0, count: d)
            }
        }
        let out = Tensor(uninitializedShape: [b, nq, c]) // every (row, head) slice is written by its task
        let rowsPerTask = tiledQueryRows
        let qBlocks = (nq + rowsPerTask - 1) / rowsPerTask
        Parallel.forEach(b * heads * qBlocks) { task in
            let bi = task / (heads * qBlocks), h = (task / qBlocks) % heads, qb = task % qBlocks
            let q0 = qb * rowsPerTask, rows = min(rowsPerTask, nq - q0)
            let tileRows = (rows + 5) / 6 * 6
            let kb = min(tiledKeyBlock, nkPad)
            let state = OnlineSoftmaxRows(rows: tileRows, keyBlock: kb, d: d)
            defer { state.deallocate() }
            let (scores, acc) = (state.scores, state.acc)
            let ktd = kt + (bi * heads + h) * d * nkPad, vpd = vp + (bi * heads + h) * nkPad * d
            // The block's queries, times 1/√d, packed [tileRows][d] (rows past the end repeat the last one; their
            // results are dropped): the scores come out scaled, so without key weights the softmax only reads them
            // for their max before the exp pass.
            let qs = UnsafeMutablePointer<Float>.allocate(capacity: tileRows * d)
            defer { qs.deallocate() }
            for r in 0..<tileRows {
                let src = q.data + (bi * nq + q0 + min(r, rows - 1)) * c + h * d
                for e in 0..<d { qs[r * d + e] = src[e] * scale }
            }
            let qRow = { (r: Int) -> UnsafePointer<Float> in UnsafePointer(qs + r * d) }
            var k0 = 0
            while k0 < nkPad {
                let cols = min(kb, nkPad - k0)
                for r in stride(from: 0, to: tileRows, by: 6) {
                    let (p0, p1, p2, p3, p4, p5) = (qRow(r), qRow(r + 1), qRow(r + 2), qRow(r + 3), qRow(r + 4),
                                                    qRow(r + 5))
                    for j in stride(from: 0, to: cols, by: 16) {
                        scoreTile(p0, p1, p2, p3, p4, p5, ktd + (k0 + j) * d, ldk: 16, d: d, scores + r * cols + j,
                                  lds: cols)
                    }
                }
                let valid = min(cols, nk - k0) // padded keys beyond nk are masked
                for r in 0..<tileRows {
                    let s = scores + r * cols
                    let m = keyLogWeights.map {
                        addMax(s, valid, weights: UnsafePointer($0.data + bi * nk + k0), start: state.rowMax[r])
                    }
                        ?? maximum(s, valid, start: state.rowMax[r])
                    for j in valid..<cols { s[j] = 0 }
                    state.step(row: r, s, valid, blockMax: m)
                }
                for r in stride(from: 0, to: tileRows, by: 6) {
                    var e = 0
                    while e + 16 <= d {
                        valueTile16(scores + r * cols, lds: cols, vpd + k0 * d + e, ldv: d, keys: cols,
                                    acc + r * d + e, lda: d)
                        e += 16
                    }
                    if e < d {
                        valueTile8(scores + r * cols, lds: cols, vpd + k0 * d + e, ldv: d, keys: cols,
                                   acc + r * d + e, lda: d)
                    }
                }
                k0 += cols
            }
            state.finish(rows: rows, into: out.data + (bi * nq + q0) * c + h * d, rowStride: c)
        }
        return out
    }

    /// s[j] ← s[j] + w[j] for j < n; returns max(start, max s).
    @inline(__always)
    static func addMax(_ s: UnsafeMutablePointer<Float>, _ n: Int, weights: UnsafePointer<Float>,
                       start: Float) -> Float {
        var m = SIMD8<Float>(repeating: start)
        let raw = UnsafeMutableRawPointer(s), wr = UnsafeRawPointer(weights)
        var j = 0
        while j + 8 <= n {
            let x = raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self)
                + wr.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self)
            raw.storeBytes(of: x, toByteOffset: j * 4, as: SIMD8<Float>.self)
            m = vmax(m, x)
            j += 8
        }
        var result = m.max()
        while j < n {
            s[j] += weights[j]
            result = max(result, s[j])
            j += 1
        }
        return result
    }

    /// s[r][0..<16] = q_r · kt[:, 0..<16] for six query rows; kt is [d][ldk].
    @inline(__always)
    static func scoreTile(_ q0: UnsafePointer<Float>, _ q1: UnsafePointer<Float>, _ q2: UnsafePointer<Float>,
                          _ q3: UnsafePointer<Float>, _ q4: UnsafePointer<Float>, _ q5: UnsafePointer<Float>,
                          _ kt: UnsafePointer<Float>, ldk: Int, d: Int, _ s: UnsafeMutablePointer<Float>, lds: Int) {
        var tile = Tile6x16()
        tile.accumulate(rows: (q0, q1, q2, q3, q4, q5), kt, ldb: ldk, steps: d)
        tile.store(to: s, rowStride: lds)
    }

    /// acc[r][0..<16] += Σ_j p[r][j] · v[j][0..<16] for six rows of probabilities p [6][lds] over `keys` keys.
    @inline(__always)
    static func valueTile16(_ p: UnsafePointer<Float>, lds: Int, _ v: UnsafePointer<Float>, ldv: Int, keys: Int,
                            _ acc: UnsafeMutablePointer<Float>, lda: Int) {
        var tile = Tile6x16(loading: acc, rowStride: lda)
        tile.accumulate(rows: (p, p + lds, p + 2 * lds, p + 3 * lds, p + 4 * lds, p + 5 * lds), v, ldb: ldv,
                        steps: keys)
        tile.store(to: acc, rowStride: lda)
    }

    /// `valueTile16` for the last 8 columns.
    @inline(__always)
    static func valueTile8(_ p: UnsafePointer<Float>, lds: Int, _ v: UnsafePointer<Float>, ldv: Int, keys: Int,
                           _ acc: UnsafeMutablePointer<Float>, lda: Int) {
        let o = UnsafeMutableRawPointer(acc), row = lda * 4
        var a0 = o.loadUnaligned(as: SIMD8<Float>.self)
        var a1 = o.loadUnaligned(fromByteOffset: row, as: SIMD8<Float>.self)
        var a2 = o.loadUnaligned(fromByteOffset: 2 * row, as: SIMD8<Float>.self)
        var a3 = o.loadUnaligned(fromByteOffset: 3 * row, as: SIMD8<Float>.self)
        var a4 = o.loadUnaligned(fromByteOffset: 4 * row, as: SIMD8<Float>.self)
        var a5 = o.loadUnaligned(fromByteOffset: 5 * row, as: SIMD8<Float>.self)
        var vr = UnsafeRawPointer(v)
        for j in 0..<keys {
            let v0 = vr.loadUnaligned(as: SIMD8<Float>.self)
            a0 = fma8(a0, SIMD8<Float>(repeating: p[j]), v0)
            a1 = fma8(a1, SIMD8<Float>(repeating: p[lds + j]), v0)
            a2 = fma8(a2, SIMD8<Float>(repeating: p[2 * lds + j]), v0)
            a3 = fma8(a3, SIMD8<Float>(repeating: p[3 * lds + j]), v0)
            a4 = fma8(a4, SIMD8<Float>(repeating: p[4 * lds + j]), v0)
            a5 = fma8(a5, SIMD8<Float>(repeating: p[5 * lds + j]), v0)
            vr += ldv * 4
        }
        o.storeBytes(of: a0, as: SIMD8<Float>.self); o.storeBytes(of: a1, toByteOffset: row, as: SIMD8<Float>.self)
        o.storeBytes(of: a2, toByteOffset: 2 * row, as: SIMD8<Float>.self)
        o.storeBytes(of: a3, toByteOffset: 3 * row, as: SIMD8<Float>.self)
        o.storeBytes(of: a4, toByteOffset: 4 * row, as: SIMD8<Float>.self)
        o.storeBytes(of: a5, toByteOffset: 5 * row, as: SIMD8<Float>.self)
    }
}

/// Six rows × 16 columns of f32 accumulators (12 ymm registers once inlined): the register tile of both attention
/// products.
struct Tile6x16 {
    var r0 = (SIMD8<Float>(), SIMD8<Float>()), r1 = (SIMD8<Float>(), SIMD8<Float>())
    var r2 = (SIMD8<Float>(), SIMD8<Float>()), r3 = (SIMD8<Float>(), SIMD8<Float>())
    var r4 = (SIMD8<Float>(), SIMD8<Float>()), r5 = (SIMD8<Float>(), SIMD8<Float>())

    init() {}

    @inline(__always)
    init(loading p: UnsafePointer<Float>, rowStride: Int) {
        let raw = UnsafeRawPointer(p), row = rowStride * 4
        @inline(__always) func load(_ r: Int) -> (SIMD8<Float>, SIMD8<Float>) {
            (raw.loadUnaligned(fromByteOffset: r * row, as: SIMD8<Float>.self),
             raw.loadUnaligned(fromByteOffset: r * row + 32, as: SIMD8<Float>.self))
        }
        (r0, r1, r2, r3, r4, r5) = (load(0), load(1), load(2), load(3), load(4), load(5))
    }

    /// row i += Σ_k x_i[k] · b[k·ldb ..< k·ldb + 16] over k < steps.
    @inline(__always)
    mutating func accumulate(rows x: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
                                      UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>),
                             _ b: UnsafePointer<Float>, ldb: Int, steps: Int) {
        var bp = UnsafeRawPointer(b)
        for k in 0..<steps {
            accumulate(x.0[k], x.1[k], x.2[k], x.3[k], x.4[k], x.5[k],
                       bp.loadUnaligned(as: SIMD8<Float>.self),
                       bp.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self))
            bp += ldb * 4
        }
    }

    /// row i += x_i · (b0, b1).
    @inline(__always)
    mutating func accumulate(_ x0: Float, _ x1: Float, _ x2: Float, _ x3: Float, _ x4: Float, _ x5: Float,
                             _ b0: SIMD8<Float>, _ b1: SIMD8<Float>) {
        @inline(__always) func fma(_ r: inout (SIMD8<Float>, SIMD8<Float>), _ x: Float) {
            let v = SIMD8<Float>(repeating: x)
            r.0 = Ops.fma8(r.0, v, b0)
            r.1 = Ops.fma8(r.1, v, b1)
        }
        fma(&r0, x0); fma(&r1, x1); fma(&r2, x2); fma(&r3, x3); fma(&r4, x4); fma(&r5, x5)
    }

    @inline(__always)
    func store(to p: UnsafeMutablePointer<Float>, rowStride: Int) {
        let raw = UnsafeMutableRawPointer(p), row = rowStride * 4
        @inline(__always) func put(_ r: Int, _ v: (SIMD8<Float>, SIMD8<Float>)) {
            raw.storeBytes(of: v.0, toByteOffset: r * row, as: SIMD8<Float>.self)
            raw.storeBytes(of: v.1, toByteOffset: r * row + 32, as: SIMD8<Float>.self)
        }
        put(0, r0); put(1, r1); put(2, r2); put(3, r3); put(4, r4); put(5, r5)
    }
}
