// Object-centric token merging (OCD §4.2) on keys/values: ToMe's bipartite soft matching, with the source score
// down-weighted by saliency so foreground tokens stay unmerged, run within spatiotemporal volumes of frames.
import Foundation
import TensorKernels

/// How destinations are chosen in each sy×sx cell.
public enum DestinationChoice: Sendable {
    /// The top-left token of every cell (tomesd's `no_rand=True`).
    case topLeft
    /// One random token per cell, drawn independently for every frame.
    case random(seed: UInt64)
}

/// Which tokens merge into which, for one volume of `frames` × `height` × `width` tokens.
public struct MergePlan: Sendable {
    public let tokenCount: Int
    /// Destination token indices (ascending).
    public let destinations: [Int]
    /// Sources kept as they are, best score first (tomesd's output order).
    public let unmerged: [Int]
    /// Merged sources and the index into `destinations` each one joins.
    public let merged: [(source: Int, destination: Int)]

    /// Size of the merged token set: unmerged sources, then destinations.
    public var outputCount: Int { unmerged.count + destinations.count }
}

public enum SaliencyTokenMerging {
    /// Finds the merge plan of tokens `metric` [T·H·W, C] (T frames of H×W, row-major). `r` sources are merged, the
    /// ones whose best cosine similarity to a destination is highest after weighting: score = (1 − w·s)·(1 + cos)/2
    /// with s the token's saliency in [0, 1] and w = `foregroundWeight`. With no saliency (or w = 0) the order is
    /// ToMe's: `bipartite_soft_matching_random2d`.
    public static func plan(metric: UnsafePointer<Float>, channels c: Int, frames: Int, height: Int, width: Int,
                            sx: Int = 2, sy: Int = 2, r requested: Int, destinations choice: DestinationChoice,
                            saliency: [Float]? = nil, foregroundWeight: Float = 1) -> MergePlan {
        let perFrame = height * width, n = frames * perFrame
        precondition(saliency == nil || saliency!.count == n, "saliency for \(saliency!.count) of \(n) tokens")
        // Destinations: one per full sy×sx cell of every frame; leftover rows and columns are sources.
        var isDestination = [Bool](repeating: false, count: n)
        var rng = SeededRandom(seed: 0)
        var randomCells = false
        if case .random(let seed) = choice { rng = SeededRandom(seed: seed); randomCells = true }
        let cellsY = height / sy, cellsX = width / sx
        for f in 0..<frames {
            for cy in 0..<cellsY {
                for cx in 0..<cellsX {
                    let pick = randomCells ? Int(rng.next() % UInt64(sx * sy)) : 0
                    let y = cy * sy + pick / sx, x = cx * sx + pick % sx
                    isDestination[f * perFrame + y * width + x] = true
                }
            }
        }
        let dst = (0..<n).filter { isDestination[$0] }
        let src = (0..<n).filter { !isDestination[$0] }
        let r = max(0, min(requested, src.count))
        guard r > 0, !dst.isEmpty else {
            return MergePlan(tokenCount: n, destinations: dst, unmerged: src, merged: [])
        }
        // Normalised metric rows, gathered into sources and destinations.
        let (best, similarity) = CosineMatching.best(CosineMatching.normalisedRows(metric, channels: c, src),
                                                     CosineMatching.normalisedRows(metric, channels: c, dst),
                                                     channels: c)
        var score = similarity
        if let saliency {
            for i in 0..<src.count {
                let s = min(max(saliency[src[i]], 0), 1)
                score[i] = (1 - foregroundWeight * s) * (1 + similarity[i]) / 2
            }
        }
        // Best first; ties keep token order (stable).
        let order = (0..<src.count).sorted { score[$0] != score[$1] ? score[$0] > score[$1] : $0 < $1 }
        return MergePlan(tokenCount: n, destinations: dst, unmerged: order[r...].map { src[$0] },
                         merged: order[..<r].map { (src[$0], best[$0]) })
    }

    /// Applies `plan` to tokens [T·H·W, C]: unmerged sources, then destinations averaged with the sources merged into
    /// them. Returns the tokens [1, M, C] and the log of each token's size [1, M] (for proportional attention).
    public static func merge(_ tokens: UnsafePointer<Float>, channels c: Int,
                             plan: MergePlan) -> (tokens: Tensor, logSizes: Tensor) {
        let m = plan.outputCount
        let out = Tensor(shape: [1, m, c]), logSizes = Tensor(shape: [1, m])
        for (row, i) in plan.unmerged.enumerated() {
            (out.data + row * c).update(from: tokens + i * c, count: c)
        }
        let base = plan.unmerged.count
        var sizes = [Float](repeating: 1, count: plan.destinations.count)
        for (row, i) in plan.destinations.enumerated() {
            (out.data + (base + row) * c).update(from: tokens + i * c, count: c)
        }
        for (s, d) in plan.merged {
            let o = out.data + (base + d) * c, p = tokens + s * c
            for k in 0..<c { o[k] += p[k] }
            sizes[d] += 1
        }
        for (d, size) in sizes.enumerated() where size > 1 {
            let o = out.data + (base + d) * c, inv = 1 / size
            for k in 0..<c { o[k] *= inv }
            logSizes.data[base + d] = log(size)
        }
        return (out, logSizes)
    }
}
