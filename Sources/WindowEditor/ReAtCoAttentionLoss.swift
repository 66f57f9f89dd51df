// ReAtCo's attention loss (Re-Attentional Diffusion; docs/methods.md, "ReAtCo") on one level's
// cross-attention probabilities, and its gradient with respect to them (the UNet's tape carries it on to the latent):
//   1. A = the probabilities averaged over the level's layers and heads, tokens 1…75 (the start token dropped),
//      × 100, softmax over those 75 tokens per cell.
//   2. Per word j (its token t_j): a_j = A[…, t_j] over (frame, h, w), smoothed by a 3×3×3 Gaussian (taps
//      e⁻¹ : 1 : e⁻¹, i.e. 0.2119 / 0.5761 / 0.2119, separable, reflect padding): the map m_j.
//   3. fg_j = mean over frames of the mean of the top k of m_j·M_j, k = max(1, ⌊0.2 · cells of M_j⌋);
//      bg_j the same over 1 − M_j; loss = Σ_j max(0, 1 − fg_j) + Σ_j max(0, bg_j) (the first sum only with
//      `foregroundOnly`, as ReAtCo's refinement iterations use it).
// The reference (autograd through diffusers' UNet) is Tests/Fixtures/make_gradient_fixtures.py.
import Foundation
import StableDiffusion
import TensorKernels

public struct ReAtCoAttentionLoss: Sendable {
    /// Per word: its position in the 77-token context (the start token is 0, so 1…75).
    public let tokenIndices: [Int]
    /// Per word, per frame: its region on the level's grid (h·w cells, row-major, 1 inside, 0 outside).
    public let regions: [[[Float]]]

    /// Only the foreground terms Σ_j max(0, 1 − fg_j) (ReAtCo's Attend-and-Excite refinement).
    public var foregroundOnly = false

    public init(tokenIndices: [Int], regions: [[[Float]]], foregroundOnly: Bool = false) {
        precondition(tokenIndices.count == regions.count, "ReAtCo loss: \(tokenIndices.count) words, "
                         + "\(regions.count) regions")
        precondition(tokenIndices.allSatisfy { (1...75).contains($0) }, "ReAtCo loss: token indices \(tokenIndices)")
        precondition(regions.joined().joined().allSatisfy { $0 == 0 || $0 == 1 }, "ReAtCo loss: regions not 0/1")
        (self.tokenIndices, self.regions, self.foregroundOnly) = (tokenIndices, regions, foregroundOnly)
    }

    /// `regions` as a tensor [K, F, mh, mw] (the component run's file).
    public init(tokenIndices: [Int], regions: Tensor, foregroundOnly: Bool = false) {
        precondition(regions.rank == 4 && regions.shape[0] == tokenIndices.count,
                     "ReAtCo loss: regions \(regions.shape) for \(tokenIndices.count) words")
        let (frames, cells) = (regions.shape[1], regions.shape[2] * regions.shape[3])
        let values = regions.array
        self.init(tokenIndices: tokenIndices, regions: tokenIndices.indices.map { j in
            (0..<frames).map { f in Array(values[((j * frames + f) * cells)...].prefix(cells)) }
        }, foregroundOnly: foregroundOnly)
    }

    public struct Result {
        public let loss: Float
        /// ∂loss/∂probabilities, one per layer, shaped as its probabilities.
        public let probabilityGradients: [Tensor]
        /// Per word, per frame: the smoothed map m_j (h·w cells).
        public let maps: [[[Float]]]
        /// Per word: fg_j, the mean over frames of its region's top-k mean.
        public let foregroundScores: [Float]
    }

    /// Tokens kept from the context: 1…75.
    static let keptTokens = 75
    /// The softmax's sharpening factor.
    static let sharpening: Float = 100
    /// Share of a region's cells whose largest values make its score.
    static let topShare = 0.2

    public func callAsFunction(_ maps: CrossAttentionMaps) -> Result {
        let layers = maps.probabilities
        let (frames, heads, cells, tokens) = (layers[0].shape[0], layers[0].shape[1], layers[0].shape[2],
                                              layers[0].shape[3])
        precondition(layers.allSatisfy { $0.shape == layers[0].shape } && tokens > Self.keptTokens
                         && cells == maps.height * maps.width,
                     "ReAtCo loss: maps \(layers.map(\.shape)) on a \(maps.height)×\(maps.width) grid")
        precondition(regions.allSatisfy { $0.count == frames && $0.allSatisfy { $0.count == cells } },
                     "ReAtCo loss: regions for \(frames) frames of \(cells) cells")
        let kept = Self.keptTokens
        let average = 1 / Float(layers.count * heads)
        // 1. Averaged, sharpened, softmaxed: s [frames][cells][75].
        var s = [Float](repeating: 0, count: frames * cells * kept)
        for p in layers { for f in 0..<frames { for h in 0..<heads { for i in 0..<cells {
            let row = p.data + ((f * heads + h) * cells + i) * tokens + 1
            let dst = (f * cells + i) * kept
            for t in 0..<kept { s[dst + t] += row[t] * average }
        } } } }
        for k in s.indices { s[k] *= Self.sharpening }
        s.withUnsafeMutableBufferPointer { Ops.softmaxRows($0.baseAddress!, rows: frames * cells, length: kept) }
        // 2.–3. Per word: the smoothed map, its two scores and the gradient with respect to s.
        let shape = SmoothingShape(frames: frames, height: maps.height, width: maps.width)
        var ds = [Float](repeating: 0, count: s.count)
        var loss: Float = 0
        var smoothedMaps: [[[Float]]] = []
        var foregroundScores: [Float] = []
        for (j, token) in tokenIndices.enumerated() {
            var a = [Float](repeating: 0, count: frames * cells)
            for r in 0..<(frames * cells) { a[r] = s[r * kept + token - 1] }
            let m = shape.smooth(a)
            smoothedMaps.append((0..<frames).map { Array(m[($0 * cells)..<(($0 + 1) * cells)]) })
            var dm = [Float](repeating: 0, count: m.count)
            for inside in foregroundOnly ? [true] : [true, false] {
                var score: Float = 0
                var picked: [[Int]] = []
                for f in 0..<frames {
                    let region = regions[j][f]
                    let values = (0..<cells).map { m[f * cells + $0] * (inside ? region[$0] : 1 - region[$0]) }
                    let count = inside ? region.reduce(0, +) : Float(cells) - region.reduce(0, +)
                    let k = min(cells, max(1, Int((Self.topShare * Double(count)).rounded(.down))))
                    let top = Array(values.indices.sorted { values[$0] > values[$1] }.prefix(k))
                    score += top.reduce(0) { $0 + values[$1] } / Float(k) / Float(frames)
                    picked.append(top)
                }
                if inside { foregroundScores.append(score) }
                // loss += max(0, 1 − fg) or max(0, bg): the slope is −1 or +1 where the hinge is active.
                let slope: Float = inside ? (1 - score > 0 ? -1 : 0) : (score > 0 ? 1 : 0)
                loss += inside ? max(0, 1 - score) : max(0, score)
                guard slope != 0 else { continue }
                for (f, top) in picked.enumerated() {
                    let region = regions[j][f]
                    for c in top {
                        dm[f * cells + c] += slope / Float(top.count) / Float(frames)
                            * (inside ? region[c] : 1 - region[c])
                    }
                }
            }
            let da = shape.smoothAdjoint(dm)
            for r in 0..<(frames * cells) { ds[r * kept + token - 1] += da[r] }
        }
        // 1 backwards: softmax, sharpening, the average, onto each layer's probabilities.
        var dz = [Float](repeating: 0, count: s.count)
        for r in 0..<(frames * cells) {
            let row = r * kept
            var dot: Float = 0
            for t in 0..<kept { dot += s[row + t] * ds[row + t] }
            for t in 0..<kept { dz[row + t] = s[row + t] * (ds[row + t] - dot) * Self.sharpening * average }
        }
        let gradient = Tensor(shape: layers[0].shape)
        for f in 0..<frames { for h in 0..<heads { for i in 0..<cells {
            let row = gradient.data + ((f * heads + h) * cells + i) * tokens + 1
            let src = (f * cells + i) * kept
            for t in 0..<kept { row[t] = dz[src + t] }
        } } }
        return Result(loss: loss, probabilityGradients: layers.indices.map { $0 == 0 ? gradient : gradient.copy() },
                      maps: smoothedMaps, foregroundScores: foregroundScores)
    }
}

/// The separable 3-tap Gaussian over (frame, h, w) with reflect padding, and its adjoint.
private struct SmoothingShape {
    let frames: Int, height: Int, width: Int
    /// e⁻¹ : 1 : e⁻¹, normalised.
    static let taps: [Float] = {
        let side = Float(exp(-1.0))
        return [side, 1, side].map { $0 / (1 + 2 * side) }
    }()

    func smooth(_ a: [Float]) -> [Float] {
        var x = a
        for axis in 0..<3 { x = pass(x, axis: axis, adjoint: false) }
        return x
    }

    func smoothAdjoint(_ g: [Float]) -> [Float] {
        var x = g
        for axis in (0..<3).reversed() { x = pass(x, axis: axis, adjoint: true) }
        return x
    }

    /// One axis: out[i] = Σ_d taps[d + 1]·in[reflect(i + d)], d ∈ {−1, 0, 1} (reflect(−1) = 1, reflect(n) = n − 2);
    /// the adjoint scatters instead. An axis of length 1 is left as it is (no neighbour to reflect).
    private func pass(_ x: [Float], axis: Int, adjoint: Bool) -> [Float] {
        let sizes = [frames, height, width]
        let n = sizes[axis]
        guard n > 1 else { return x }
        let stride = axis == 0 ? height * width : axis == 1 ? width : 1
        func reflect(_ i: Int) -> Int { i < 0 ? -i : i >= n ? 2 * n - 2 - i : i }
        var out = [Float](repeating: 0, count: x.count)
        for base in 0..<x.count where (base / stride) % n == 0 {
            for i in 0..<n { for d in -1...1 {
                let (target, source) = (base + i * stride, base + reflect(i + d) * stride)
                if adjoint { out[source] += Self.taps[d + 1] * x[target] } else {
                    out[target] += Self.taps[d + 1] * x[source]
                }
            } }
        }
        return out
    }
}
