// Nearest neighbours by cosine similarity between two sets of token rows: ToMe's bipartite matching
// (SaliencyTokenMerging) and TokenFlow's correspondences (TokenFlowPropagation) both use it.
import TensorKernels

enum CosineMatching {
    /// Rows `indices` of `tokens` [·, C], each scaled to unit length (norm floored at 1e-12), packed
    /// [indices.count, C].
    static func normalisedRows<Rows: Collection<Int>>(_ tokens: UnsafePointer<Float>, channels c: Int,
                                                      _ indices: Rows) -> [Float] {
        var out = [Float](repeating: 0, count: indices.count * c)
        for (row, i) in indices.enumerated() {
            let p = tokens + i * c
            var norm: Float = 0
            for k in 0..<c { norm += p[k] * p[k] }
            let inv = 1 / max(norm.squareRoot(), 1e-12)
            for k in 0..<c { out[row * c + k] = p[k] * inv }
        }
        return out
    }

    /// For each unit row of `a` [n, C], the unit row of `b` [m, C] with the highest cosine similarity (the first on
    /// ties), and that similarity.
    static func best(_ a: [Float], _ b: [Float], channels c: Int) -> (index: [Int], similarity: [Float]) {
        let (n, m) = (a.count / c, b.count / c)
        var scores = [Float](repeating: 0, count: n * m)
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
            scores.withUnsafeMutableBufferPointer { sp in
                Ops.gemm(ap.baseAddress!, bp.baseAddress!, sp.baseAddress!, m: n, n: m, k: c, transB: true)
            }
        } }
        var index = [Int](repeating: 0, count: n), similarity = [Float](repeating: -.infinity, count: n)
        for i in 0..<n {
            for j in 0..<m where scores[i * m + j] > similarity[i] { similarity[i] = scores[i * m + j]; index[i] = j }
        }
        return (index, similarity)
    }
}
