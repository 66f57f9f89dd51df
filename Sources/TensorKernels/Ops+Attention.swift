import Foundation

extension Ops {
    /// Keys per block of the online softmax: the largest score block ever held is (query block × keyBlock).
    public static let attentionKeyBlock = 1024
    public static let attentionQueryBlock = 256

    /// Multi-head attention, memory-bounded: softmax(q·kᵀ/√d + keyLogWeights)·v computed over key blocks with an
    /// online (running max/sum) softmax, so no full score matrix is ever held.
    /// q [B, Nq, C], k and v [B, Nk, C], C = heads × headDim; keyLogWeights [B, Nk] is added to every score of its
    /// key (proportional attention for merged tokens); `causal` masks keys after the query's own position.
    public static func attention(query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
                                 keyLogWeights: Tensor? = nil, causal: Bool = false) -> Tensor {
        return Profiler.measure(k.shape[1] == q.shape[1] ? "attention (self)" : "attention (other)") {
        let (b, nq, c) = (q.shape[0], q.shape[1], q.shape[2])
        let nk = k.shape[1]
        precondition(k.shape == [b, nk, c] && v.shape == [b, nk, c],
                     "attention: q \(q.shape) k \(k.shape) v \(v.shape)")
        precondition(c % heads == 0, "attention: \(c) channels in \(heads) heads")
        if let w = keyLogWeights {
            precondition(w.count == b * nk, "attention: keyLogWeights \(w.shape) for \(b)×\(nk) keys")
        }
        let d = c / heads
        if !causal && d % 8 == 0 {
            return tiledAttention(query: q, key: k, value: v, heads: heads, keyLogWeights: keyLogWeights)
        }
        let scale = 1 / Float(d).squareRoot()
        let out = Tensor(shape: [b, nq, c])
        let qBlocks = (nq + attentionQueryBlock - 1) / attentionQueryBlock
        let kb = min(attentionKeyBlock, nk)
        Parallel.forEach(b * heads * qBlocks) { task in
            let bi = task / (heads * qBlocks), h = (task / qBlocks) % heads, qb = task % qBlocks
            let q0 = qb * attentionQueryBlock, rows = min(attentionQueryBlock, nq - q0)
            let state = OnlineSoftmaxRows(rows: rows, keyBlock: kb, d: d)
            defer { state.deallocate() }
            let (scores, acc) = (state.scores, state.acc)
            let qp = q.data + (bi * nq + q0) * c + h * d
            var k0 = 0
            while k0 < nk {
                if causal && k0 > q0 + rows - 1 { break }
                let cols = min(kb, nk - k0)
                let kp = k.data + (bi * nk + k0) * c + h * d
                let vp = v.data + (bi * nk + k0) * c + h * d
                gemm(qp, kp, scores, m: rows, n: cols, k: d, transB: true, lda: c, ldb: c, ldc: cols, alpha: scale)
                for r in 0..<rows {
                    let s = scores + r * cols
                    if let w = keyLogWeights {
                        let wp = w.data + bi * nk + k0
                        for j in 0..<cols { s[j] += wp[j] }
                    }
                    if causal {
                        let limit = q0 + r - k0 // keys j > limit are masked
                        if limit < cols - 1 { for j in max(0, limit + 1)..<cols { s[j] = -Float.infinity } }
                    }
                    state.step(row: r, s, cols, blockMax: maximum(s, cols, start: state.rowMax[r]))
                }
                gemm(scores, vp, acc, m: rows, n: d, k: cols, lda: cols, ldb: c, ldc: d, beta: 1)
                k0 += cols
            }
            state.finish(rows: rows, into: out.data + (bi * nq + q0) * c + h * d, rowStride: c)
        }
        return out
        }
    }

    /// Full attention probabilities [B, heads, Nq, Nk] (only for few keys, e.g. 77 text tokens).
    public static func attentionProbabilities(query q: Tensor, key k: Tensor, heads: Int) -> Tensor {
        let (b, nq, c) = (q.shape[0], q.shape[1], q.shape[2])
        let nk = k.shape[1], d = c / heads
        let out = Tensor(shape: [b, heads, nq, nk])
        let scale = 1 / Float(d).squareRoot()
        for bi in 0..<b {
            for h in 0..<heads {
                let dst = out.data + (bi * heads + h) * nq * nk
                gemm(q.data + bi * nq * c + h * d, k.data + bi * nk * c + h * d, dst, m: nq, n: nk, k: d,
                     transB: true, lda: c, ldb: c, ldc: nk, alpha: scale)
                Parallel.forEach(nq) { r in softmaxRow(dst + r * nk, nk) }
            }
        }
        return out
    }
}

/// A task's buffers for the online softmax over key blocks: one block of scores, the output accumulator, and the
/// running max and sum of each query row.
struct OnlineSoftmaxRows {
    let d: Int
    let scores, acc, rowMax, rowSum: UnsafeMutablePointer<Float>

    init(rows: Int, keyBlock: Int, d: Int) {
        self.d = d
        scores = .allocate(capacity: rows * keyBlock)
        acc = .allocate(capacity: rows * d)
        rowMax = .allocate(capacity: rows)
        rowSum = .allocate(capacity: rows)
        acc.initialize(repeating: 0, count: rows * d)
        rowMax.initialize(repeating: -Float.infinity, count: rows)
        rowSum.initialize(repeating: 0, count: rows)
    }

    func deallocate() { scores.deallocate(); acc.deallocate(); rowMax.deallocate(); rowSum.deallocate() }

    /// One key block for row r: s[0..<n] (its scores) becomes exp(s − m), m the running max including this block
    /// (`blockMax`); the row's running sum and accumulator are rescaled to m.
    @inline(__always)
    func step(row r: Int, _ s: UnsafeMutablePointer<Float>, _ n: Int, blockMax m: Float) {
        let correction = rowMax[r] == -Float.infinity ? 0 : expf(rowMax[r] - m)
        var sum: Float = 0
        if m == -Float.infinity {
            for j in 0..<n { s[j] = 0 }
        } else {
            sum = Ops.expShiftSum(s, n, minus: m)
        }
        rowSum[r] = rowSum[r] * correction + sum
        rowMax[r] = m
        if correction != 1 {
            let a = acc + r * d
            for i in 0..<d { a[i] *= correction }
        }
    }

    /// out[r·rowStride + i] = acc[r][i] / sum_r for the first `rows` rows.
    func finish(rows: Int, into out: UnsafeMutablePointer<Float>, rowStride: Int) {
        for r in 0..<rows {
            let inv = rowSum[r] > 0 ? 1 / rowSum[r] : 0
            for i in 0..<d { out[r * rowStride + i] = acc[r * d + i] * inv }
        }
    }
}
