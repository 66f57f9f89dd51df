import Foundation
import COpenBLAS

/// Tensor kernels. Tensors are contiguous row-major f32; functions return new tensors unless named `…InPlace`.
public enum Ops {}

extension Ops {
    /// OpenBLAS runs single-threaded; `gemm` splits large products over the cores itself, so Dispatch is the only
    /// thread pool. OpenBLAS's own pool threads spin in sched_yield for a while after every call
    /// (OPENBLAS_THREAD_TIMEOUT, read only at library load) against whatever runs next on the two cores (inside
    /// attention that made it 3× slower). For whole UNet forwards, interleaved A/B runs of this split against
    /// OpenBLAS's pool were inside this machine's run-to-run noise.
    static let blasSingleThreaded: Void = { openblas_set_num_threads(1) }()

    /// Products below this many multiply-adds run on the calling thread.
    static let gemmSplitThreshold = 1 << 22

    /// C[m,n] = alpha · op(A) · op(B) + beta · C through cblas_sgemm (row-major); large products are split over the
    /// cores along the larger of n and m.
    public static func gemm(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                            m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false,
                            lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil, alpha: Float = 1, beta: Float = 0) {
        _ = blasSingleThreaded
        let lda = lda ?? (transA ? m : k), ldb = ldb ?? (transB ? k : n), ldc = ldc ?? n
        let parts = Parallel.cores
        guard parts > 1, m * n * k >= gemmSplitThreshold, max(m, n) >= 32 * parts else {
            sgemm(a, b, c, m: m, n: n, k: k, transA: transA, transB: transB, lda: lda, ldb: ldb, ldc: ldc,
                  alpha: alpha, beta: beta)
            return
        }
        // Each part reads all of the operand that is not split: split the side whose other operand is smaller
        // (splitting n re-reads A [m, k] per part, splitting m re-reads B [k, n]).
        let splitN = n >= m
        let total = splitN ? n : m
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            // Part boundaries on multiples of 16 (whole SIMD panels for the BLAS kernels).
            let lo = (total * p / parts) & ~15, hi = p == parts - 1 ? total : (total * (p + 1) / parts) & ~15
            guard hi > lo else { return }
            if splitN {
                let bp = transB ? b + lo * ldb : b + lo
                sgemm(a, bp, c + lo, m: m, n: hi - lo, k: k, transA: transA, transB: transB,
                      lda: lda, ldb: ldb, ldc: ldc, alpha: alpha, beta: beta)
            } else {
                let ap = transA ? a + lo : a + lo * lda
                sgemm(ap, b, c + lo * ldc, m: hi - lo, n: n, k: k, transA: transA, transB: transB,
                      lda: lda, ldb: ldb, ldc: ldc, alpha: alpha, beta: beta)
            }
        }
    }

    @inline(__always)
    static func sgemm(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                      m: Int, n: Int, k: Int, transA: Bool, transB: Bool, lda: Int, ldb: Int, ldc: Int,
                      alpha: Float, beta: Float) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
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
        return Profiler.measure("linear") {
        let inF = weight.shape[1], outF = weight.shape[0]
        precondition(x.shape.last == inF, "linear: input \(x.shape) against weight \(weight.shape)")
        let out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [outF]) // bias rows or beta = 0 fill it
        guard inF > 0, x.count > 0 else {   // empty input (no rows, or no features): no division by zero
            if out.count > 0 { for i in 0..<out.count { out.data[i] = bias?.data[i % outF] ?? 0 } }
            return out
        }
        let rows = x.count / inF
        if let bias {
            precondition(bias.count == outF, "linear: bias \(bias.shape) for \(outF) outputs")
            for r in 0..<rows { (out.data + r * outF).update(from: bias.data, count: outF) }
        }
        gemm(x.data, weight.data, out.data, m: rows, n: outF, k: inF, transB: true, beta: bias == nil ? 0 : 1)
        return out
        }
    }
}
