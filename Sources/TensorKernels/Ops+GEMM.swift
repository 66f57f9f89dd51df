import COpenBLAS

/// Tensor kernels. Tensors are contiguous row-major f32; functions return new tensors unless named `…InPlace`.
public enum Ops {}

extension Ops {
    /// C[m,n] = alpha · op(A) · op(B) + beta · C through cblas_sgemm (row-major).
    @inline(__always)
    public static func gemm(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                            m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false,
                            lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil, alpha: Float = 1, beta: Float = 0) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha,
                    a, Int32(lda ?? (transA ? m : k)), b, Int32(ldb ?? (transB ? k : n)),
                    beta, c, Int32(ldc ?? n))
    }

    /// a [M,K] (or [K,M] with transposeA) × b [K,N] (or [N,K] with transposeB) → [M,N]; batched when both are 3-D.
    public static func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
        precondition(a.rank == b.rank && (a.rank == 2 || a.rank == 3), "matmul of \(a.shape) and \(b.shape)")
        let batch = a.rank == 3 ? a.shape[0] : 1
        precondition(a.rank == 2 || b.shape[0] == batch, "matmul batch mismatch \(a.shape) \(b.shape)")
        let (ar, ac) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (br, bc) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
        let (m, k) = transposeA ? (ac, ar) : (ar, ac)
        let (k2, n) = transposeB ? (bc, br) : (br, bc)
        precondition(k == k2, "matmul inner dimensions \(a.shape) \(b.shape)")
        let out = Tensor(shape: (a.rank == 3 ? [batch] : []) + [m, n])
        for i in 0..<batch {
            gemm(a.data + i * ar * ac, b.data + i * br * bc, out.data + i * m * n, m: m, n: n, k: k,
                 transA: transposeA, transB: transposeB)
        }
        return out
    }

    /// x [..., in] · weightᵀ (weight [out, in], PyTorch layout) + bias → [..., out].
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        let inF = weight.shape[1], outF = weight.shape[0]
        precondition(x.shape.last == inF, "linear: input \(x.shape) against weight \(weight.shape)")
        let rows = x.count / inF
        let out = Tensor(shape: Array(x.shape.dropLast()) + [outF])
        if let bias {
            precondition(bias.count == outF, "linear: bias \(bias.shape) for \(outF) outputs")
            for r in 0..<rows { (out.data + r * outF).update(from: bias.data, count: outF) }
        }
        gemm(x.data, weight.data, out.data, m: rows, n: outF, k: inF, transB: true, beta: bias == nil ? 0 : 1)
        return out
    }
}
