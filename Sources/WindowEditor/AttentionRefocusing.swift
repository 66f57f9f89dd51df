// ReAtCo's Re-Attentional Diffusion (RAD) update, which mode=reatco (Methods/ReAtCoMethod.swift) uses to move each
// word's object into its region (docs/methods.md, "ReAtCo"): before each of the first `share` of the edit steps, the
// window's latents step down the gradient of ReAtCoAttentionLoss through a conditional UNet call (target prompt, no
// guidance):
//   x ← x − α_i·∇ₓ loss,  α_i = scale·√(linspace(1, 0.5, steps)[i])        (ReAtCo: scale 20, 25 of 50 steps)
// and at 0 %, 20 % and 40 % of the steps (ReAtCo's steps 0, 10 and 20 of 50), before that update, an Attend-and-Excite
// loop on the foreground term alone until every word's fg reaches 0.05, 0.5 and 0.8 (at most `refinementIterations`
// updates). The UNet's self-attention in these calls is the edit's cross-frame attention within the frames of the
// call (UNet2DConditionModel+Gradient.swift), so the gradient sees the frames together as the edit steps do.
import StableDiffusion
import TensorKernels

struct AttentionRefocusing {
    struct Config: Equatable {
        /// Share of the edit steps (the first) that refocus.
        var share = 0.5
        /// α's scale.
        var scale = 20.0
        /// Most foreground-only updates at a refinement step; 0 = no refinement.
        var refinementIterations = 20
        /// The UNet level whose cross-attention maps the loss reads.
        var level = 0
        /// Radius in latent cells of the low-pass applied to the gradient before each update; 0 = none (ReAtCo).
        var smoothing = 0
    }

    let config: Config
    let unet: UNet2DConditionModel
    let weights: BackwardWeights
    /// The target prompt's embedding, one per frame [F, 77, D].
    let context: Tensor
    let loss: ReAtCoAttentionLoss
    /// Edit steps of the window.
    let steps: Int
    /// Per frame of the call, the frames whose keys/values its self-attention sees (nil: its own).
    var selfAttentionGroups: [[Int]]? = nil

    /// Refinement steps (as shares of the edit steps) and the foreground score every word must reach there.
    static let refinements: [(share: Double, threshold: Float)] = [(0, 0.05), (0.2, 0.5), (0.4, 0.8)]

    var refocusedSteps: Int { min(steps, Int((Double(steps) * config.share).rounded())) }

    /// α_i = scale·√(linspace(1, 0.5, steps)[i]).
    func stepSize(_ i: Int) -> Float {
        let fraction = steps > 1 ? Double(i) / Double(steps - 1) : 0
        return Float(config.scale * (1 - 0.5 * fraction).squareRoot())
    }

    /// The foreground score every word must reach before edit step `i`, if `i` is a refinement step (where few steps
    /// put two refinements on one step, the higher threshold).
    func refinementThreshold(_ i: Int) -> Float? {
        guard config.refinementIterations > 0 else { return nil }
        return Self.refinements.last { Int((Double(steps) * $0.share).rounded()) == i }?.threshold
    }

    /// ∂loss/∂x at `timestep`, with the loss's value and each word's foreground score.
    func gradient(_ x: Tensor, timestep: Int, foregroundOnly: Bool = false)
        -> (loss: Float, gradient: Tensor, foreground: [Float]) {
        var scores: [Float] = []
        var refocus = loss
        refocus.foregroundOnly = foregroundOnly
        let r = unet.crossAttentionGradient(x, timesteps: [Float](repeating: Float(timestep), count: x.shape[0]),
                                            encoderHiddenStates: context, level: config.level, weights: weights,
                                            selfAttentionGroups: selfAttentionGroups) {
            let result = refocus($0)
            scores = result.foregroundScores
            return (result.loss, result.probabilityGradients)
        }
        return (r.loss, Self.smoothed(r.gradient, radius: config.smoothing), scores)
    }

    /// The latents edit step `i` starts from; `losses` are the loss at each update (before it), refinement first.
    func callAsFunction(_ x: Tensor, editStep i: Int, timestep: Int,
                        isCancelled: () -> Bool = { false }) throws -> (latent: Tensor, losses: [Float]) {
        guard i < refocusedSteps else { return (x, []) }
        let alpha = stepSize(i)
        var latent = x, losses: [Float] = []
        if let threshold = refinementThreshold(i) {
            for _ in 0..<config.refinementIterations {
                if isCancelled() { throw EditCancelled() }
                let g = gradient(latent, timestep: timestep, foregroundOnly: true)
                guard (g.foreground.min() ?? 1) < threshold else { break }
                losses.append(g.loss)
                latent = Self.descend(latent, g.gradient, alpha)
            }
        }
        if isCancelled() { throw EditCancelled() }
        let g = gradient(latent, timestep: timestep)
        losses.append(g.loss)
        return (Self.descend(latent, g.gradient, alpha), losses)
    }

    /// x − α·g.
    static func descend(_ x: Tensor, _ g: Tensor, _ alpha: Float) -> Tensor {
        let out = x.copy()
        for k in 0..<out.count { out.data[k] -= alpha * g.data[k] }
        return out
    }

    /// `g` [F, C, h, w] low-passed over (h, w): a box filter of 2·radius + 1 cells, run twice along each axis (a
    /// tent of 4·radius + 1 cells), the edges clamped; `g` itself for radius 0.
    static func smoothed(_ g: Tensor, radius: Int) -> Tensor {
        guard radius > 0 else { return g }
        let (h, w) = (g.shape[2], g.shape[3])
        var values = g.array
        let planes = values.count / (h * w)
        var line = [Float](), sums = [Float]()
        func boxPass(_ n: Int, _ stride: Int, _ lines: [(Int)]) {
            for base in lines {
                line = (0..<n).map { values[base + $0 * stride] }
                sums = [Float](repeating: 0, count: n + 1)
                for i in 0..<n { sums[i + 1] = sums[i] + line[i] }
                for i in 0..<n {
                    let (lo, hi) = (max(0, i - radius), min(n, i + radius + 1))
                    values[base + i * stride] = (sums[hi] - sums[lo]) / Float(hi - lo)
                }
            }
        }
        let rows = (0..<planes).flatMap { p in (0..<h).map { p * h * w + $0 * w } }
        let columns = (0..<planes).flatMap { p in (0..<w).map { p * h * w + $0 } }
        for _ in 0..<2 { boxPass(w, 1, rows); boxPass(h, w, columns) }
        return Tensor(shape: g.shape, values: values)
    }
}
