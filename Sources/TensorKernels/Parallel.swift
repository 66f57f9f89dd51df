import Foundation

/// Data-parallel loops over the machine's cores (Dispatch): the only thread pool. OpenBLAS runs single-threaded and
/// `Ops.gemm` splits large products over these cores itself.
public enum Parallel {
    public static let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Runs `body(i)` for i in 0..<count, in chunks spread over the cores.
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        if count <= 1 || cores == 1 {
            for i in 0..<count { body(i) }
            return
        }
        let chunks = min(count, cores * 4)
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let start = count * c / chunks, end = count * (c + 1) / chunks
            for i in start..<end { body(i) }
        }
    }

    /// Runs `body(range)` over contiguous ranges covering 0..<count; for light per-element work.
    public static func forRanges(_ count: Int, minimum: Int = 16384, _ body: (Range<Int>) -> Void) {
        let chunks = max(1, min(cores, count / max(minimum, 1)))
        if chunks == 1 { body(0..<count); return }
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            body((count * c / chunks)..<(count * (c + 1) / chunks))
        }
    }
}
