import Foundation

// Attention with its own register-tiled SIMD kernels, for head sizes that are multiples of 8 (every SD head: 40, 80,
// 160 in SD 1.x, 64 in SD 2.x). BLAS is a poor fit here: QKᵀ has an inner dimension of 40 and softmax·V an output
// width of 40, so sgemm spends its time packing (measured: 39 GFLOP/s at 64×64 tokens, a quarter of the roofline).
//
// Per (item, head) K is packed in panels of 16 keys, each transposed [d][16] (contiguous for the tile kernel: a plain
// [d][keys] transpose puts the 40 rows a tile reads 16 KB apart, all in one L1 set), and V as [keys][d] (keys padded to 16 with zeros, masked in the
// softmax). Each task takes 48 query rows and walks key blocks of 256: S = Q·Kᵀ in 6×16 tiles, an online softmax
// per row, then O += P·V in 6×16 tiles. Everything a task touches (S 48 KB, K and V blocks 40 KB each at d = 40)
// stays in L2.

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
    static func tiledAttention(query q: Tensor, key k: Tensor, value v: Tensor, heads: Int, keyLogWeights: Tensor?) -> Tensor {
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
        let out = Tensor(shape: [b, nq, c])
        let rowsPerTask = tiledQueryRows
        let qBlocks = (nq + rowsPerTask - 1) / rowsPerTask
        Parallel.forEach(b * heads * qBlocks) { task in
            let bi = task / (heads * qBlocks), h = (task / qBlocks) % heads, qb = task % qBlocks
            let q0 = qb * rowsPerTask, rows = min(rowsPerTask, nq - q0)
            let tileRows = (rows + 5) / 6 * 6
            let kb = min(tiledKeyBlock, nkPad)
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: tileRows * kb)
            let acc = UnsafeMutablePointer<Float>.allocate(capacity: tileRows * d)
            let rowMax = UnsafeMutablePointer<Float>.allocate(capacity: tileRows)
            let rowSum = UnsafeMutablePointer<Float>.allocate(capacity: tileRows)
            defer { scores.deallocate(); acc.deallocate(); rowMax.deallocate(); rowSum.deallocate() }
            acc.initialize(repeating: 0, count: tileRows * d)
            rowMax.initialize(repeating: -Float.infinity, count: tileRows)
            rowSum.initialize(repeating: 0, count: tileRows)
            let ktd = kt + (bi * heads + h) * d * nkPad, vpd = vp + (bi * heads + h) * nkPad * d
            // Query row r of this block (rows past the end repeat the last one; their results are dropped).
            let qRow = { (r: Int) -> UnsafePointer<Float> in UnsafePointer(q.data + (bi * nq + q0 + min(r, rows - 1)) * c + h * d) }
            var k0 = 0
            while k0 < nkPad {
                let cols = min(kb, nkPad - k0)
                for r in stride(from: 0, to: tileRows, by: 6) {
                    let (p0, p1, p2, p3, p4, p5) = (qRow(r), qRow(r + 1), qRow(r + 2), qRow(r + 3), qRow(r + 4), qRow(r + 5))
                    for j in stride(from: 0, to: cols, by: 16) {
                        scoreTile(p0, p1, p2, p3, p4, p5, ktd + (k0 + j) * d, ldk: 16, d: d, scores + r * cols + j, lds: cols)
                    }
                }
                let valid = min(cols, nk - k0) // padded keys beyond nk are masked
                for r in 0..<tileRows {
                    let s = scores + r * cols
                    let m = scaleAddMax(s, valid, scale: scale,
                                        weights: keyLogWeights.map { UnsafePointer($0.data + bi * nk + k0) }, start: rowMax[r])
                    for j in valid..<cols { s[j] = 0 }
                    let correction = rowMax[r] == -Float.infinity ? 0 : expf(rowMax[r] - m)
                    var sum: Float = 0
                    if m == -Float.infinity {
                        for j in 0..<valid { s[j] = 0 }
                    } else {
                        sum = expShiftSum(s, valid, minus: m)
                    }
                    rowSum[r] = rowSum[r] * correction + sum
                    rowMax[r] = m
                    if correction != 1 {
                        let a = acc + r * d
                        for i in 0..<d { a[i] *= correction }
                    }
                }
                for r in stride(from: 0, to: tileRows, by: 6) {
                    var e = 0
                    while e + 16 <= d {
                        valueTile16(scores + r * cols, lds: cols, vpd + k0 * d + e, ldv: d, keys: cols, acc + r * d + e, lda: d)
                        e += 16
                    }
                    if e < d { valueTile8(scores + r * cols, lds: cols, vpd + k0 * d + e, ldv: d, keys: cols, acc + r * d + e, lda: d) }
                }
                k0 += cols
            }
            let op = out.data + (bi * nq + q0) * c + h * d
            for r in 0..<rows {
                let inv = rowSum[r] > 0 ? 1 / rowSum[r] : 0
                for i in 0..<d { op[r * c + i] = acc[r * d + i] * inv }
            }
        }
        return out
    }

    /// s[j] ← s[j]·scale + w[j] for j < n; returns max(start, max s).
    @inline(__always)
    static func scaleAddMax(_ s: UnsafeMutablePointer<Float>, _ n: Int, scale: Float, weights: UnsafePointer<Float>?, start: Float) -> Float {
        var m = SIMD8<Float>(repeating: start)
        let raw = UnsafeMutableRawPointer(s), sc = SIMD8<Float>(repeating: scale)
        var j = 0
        while j + 8 <= n {
            var x = raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self) * sc
            if let weights { x += UnsafeRawPointer(weights).loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self) }
            raw.storeBytes(of: x, toByteOffset: j * 4, as: SIMD8<Float>.self)
            m = vmax(m, x)
            j += 8
        }
        var result = m.max()
        while j < n {
            s[j] = s[j] * scale + (weights?[j] ?? 0)
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
        var a00 = SIMD8<Float>(), a01 = SIMD8<Float>(), a10 = SIMD8<Float>(), a11 = SIMD8<Float>()
        var a20 = SIMD8<Float>(), a21 = SIMD8<Float>(), a30 = SIMD8<Float>(), a31 = SIMD8<Float>()
        var a40 = SIMD8<Float>(), a41 = SIMD8<Float>(), a50 = SIMD8<Float>(), a51 = SIMD8<Float>()
        var kp = UnsafeRawPointer(kt)
        for e in 0..<d {
            let k0 = kp.loadUnaligned(as: SIMD8<Float>.self), k1 = kp.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
            var x = SIMD8<Float>(repeating: q0[e]); a00 = fma8(a00, x, k0); a01 = fma8(a01, x, k1)
            x = SIMD8<Float>(repeating: q1[e]); a10 = fma8(a10, x, k0); a11 = fma8(a11, x, k1)
            x = SIMD8<Float>(repeating: q2[e]); a20 = fma8(a20, x, k0); a21 = fma8(a21, x, k1)
            x = SIMD8<Float>(repeating: q3[e]); a30 = fma8(a30, x, k0); a31 = fma8(a31, x, k1)
            x = SIMD8<Float>(repeating: q4[e]); a40 = fma8(a40, x, k0); a41 = fma8(a41, x, k1)
            x = SIMD8<Float>(repeating: q5[e]); a50 = fma8(a50, x, k0); a51 = fma8(a51, x, k1)
            kp += ldk * 4
        }
        let o = UnsafeMutableRawPointer(s), row = lds * 4
        o.storeBytes(of: a00, as: SIMD8<Float>.self); o.storeBytes(of: a01, toByteOffset: 32, as: SIMD8<Float>.self)
        o.storeBytes(of: a10, toByteOffset: row, as: SIMD8<Float>.self); o.storeBytes(of: a11, toByteOffset: row + 32, as: SIMD8<Float>.self)
        o.storeBytes(of: a20, toByteOffset: 2 * row, as: SIMD8<Float>.self); o.storeBytes(of: a21, toByteOffset: 2 * row + 32, as: SIMD8<Float>.self)
        o.storeBytes(of: a30, toByteOffset: 3 * row, as: SIMD8<Float>.self); o.storeBytes(of: a31, toByteOffset: 3 * row + 32, as: SIMD8<Float>.self)
        o.storeBytes(of: a40, toByteOffset: 4 * row, as: SIMD8<Float>.self); o.storeBytes(of: a41, toByteOffset: 4 * row + 32, as: SIMD8<Float>.self)
        o.storeBytes(of: a50, toByteOffset: 5 * row, as: SIMD8<Float>.self); o.storeBytes(of: a51, toByteOffset: 5 * row + 32, as: SIMD8<Float>.self)
    }

    /// acc[r][0..<16] += Σ_j p[r][j] · v[j][0..<16] for six rows of probabilities p [6][lds] over `keys` keys.
    @inline(__always)
    static func valueTile16(_ p: UnsafePointer<Float>, lds: Int, _ v: UnsafePointer<Float>, ldv: Int, keys: Int,
                            _ acc: UnsafeMutablePointer<Float>, lda: Int) {
        let o = UnsafeMutableRawPointer(acc), row = lda * 4
        var a00 = o.loadUnaligned(as: SIMD8<Float>.self), a01 = o.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
        var a10 = o.loadUnaligned(fromByteOffset: row, as: SIMD8<Float>.self), a11 = o.loadUnaligned(fromByteOffset: row + 32, as: SIMD8<Float>.self)
        var a20 = o.loadUnaligned(fromByteOffset: 2 * row, as: SIMD8<Float>.self), a21 = o.loadUnaligned(fromByteOffset: 2 * row + 32, as: SIMD8<Float>.self)
        var a30 = o.loadUnaligned(fromByteOffset: 3 * row, as: SIMD8<Float>.self), a31 = o.loadUnaligned(fromByteOffset: 3 * row + 32, as: SIMD8<Float>.self)
        var a40 = o.loadUnaligned(fromByteOffset: 4 * row, as: SIMD8<Float>.self), a41 = o.loadUnaligned(fromByteOffset: 4 * row + 32, as: SIMD8<Float>.self)
        var a50 = o.loadUnaligned(fromByteOffset: 5 * row, as: SIMD8<Float>.self), a51 = o.loadUnaligned(fromByteOffset: 5 * row + 32, as: SIMD8<Float>.self)
        var vr = UnsafeRawPointer(v)
        for j in 0..<keys {
            let v0 = vr.loadUnaligned(as: SIMD8<Float>.self), v1 = vr.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
            var x = SIMD8<Float>(repeating: p[j]); a00 = fma8(a00, x, v0); a01 = fma8(a01, x, v1)
            x = SIMD8<Float>(repeating: p[lds + j]); a10 = fma8(a10, x, v0); a11 = fma8(a11, x, v1)
            x = SIMD8<Float>(repeating: p[2 * lds + j]); a20 = fma8(a20, x, v0); a21 = fma8(a21, x, v1)
            x = SIMD8<Float>(repeating: p[3 * lds + j]); a30 = fma8(a30, x, v0); a31 = fma8(a31, x, v1)
            x = SIMD8<Float>(repeating: p[4 * lds + j]); a40 = fma8(a40, x, v0); a41 = fma8(a41, x, v1)
            x = SIMD8<Float>(repeating: p[5 * lds + j]); a50 = fma8(a50, x, v0); a51 = fma8(a51, x, v1)
            vr += ldv * 4
        }
        o.storeBytes(of: a00, as: SIMD8<Float>.self); o.storeBytes(of: a01, toByteOffset: 32, as: SIMD8<Float>.self)
        o.storeBytes(of: a10, toByteOffset: row, as: SIMD8<Float>.self); o.storeBytes(of: a11, toByteOffset: row + 32, as: SIMD8<Float>.self)
        o.storeBytes(of: a20, toByteOffset: 2 * row, as: SIMD8<Float>.self); o.storeBytes(of: a21, toByteOffset: 2 * row + 32, as: SIMD8<Float>.self)
        o.storeBytes(of: a30, toByteOffset: 3 * row, as: SIMD8<Float>.self); o.storeBytes(of: a31, toByteOffset: 3 * row + 32, as: SIMD8<Float>.self)
        o.storeBytes(of: a40, toByteOffset: 4 * row, as: SIMD8<Float>.self); o.storeBytes(of: a41, toByteOffset: 4 * row + 32, as: SIMD8<Float>.self)
        o.storeBytes(of: a50, toByteOffset: 5 * row, as: SIMD8<Float>.self); o.storeBytes(of: a51, toByteOffset: 5 * row + 32, as: SIMD8<Float>.self)
    }

    /// `valueTile16` for the last 8 columns.
    @inline(__always)
    static func valueTile8(_ p: UnsafePointer<Float>, lds: Int, _ v: UnsafePointer<Float>, ldv: Int, keys: Int,
                           _ acc: UnsafeMutablePointer<Float>, lda: Int) {
        let o = UnsafeMutableRawPointer(acc), row = lda * 4
        var a0 = o.loadUnaligned(as: SIMD8<Float>.self), a1 = o.loadUnaligned(fromByteOffset: row, as: SIMD8<Float>.self)
        var a2 = o.loadUnaligned(fromByteOffset: 2 * row, as: SIMD8<Float>.self), a3 = o.loadUnaligned(fromByteOffset: 3 * row, as: SIMD8<Float>.self)
        var a4 = o.loadUnaligned(fromByteOffset: 4 * row, as: SIMD8<Float>.self), a5 = o.loadUnaligned(fromByteOffset: 5 * row, as: SIMD8<Float>.self)
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
        o.storeBytes(of: a2, toByteOffset: 2 * row, as: SIMD8<Float>.self); o.storeBytes(of: a3, toByteOffset: 3 * row, as: SIMD8<Float>.self)
        o.storeBytes(of: a4, toByteOffset: 4 * row, as: SIMD8<Float>.self); o.storeBytes(of: a5, toByteOffset: 5 * row, as: SIMD8<Float>.self)
    }
}
