// mode=reatco (ReAtCo, docs/methods.md): the baseline edit with each word of `region-words` (or `regions`) drawn in
// its own region. Before each edit step:
//   1. Refocus (AttentionRefocusing.swift): during the first refocus-share of the steps the latent steps down the
//      gradient of ReAtCo's attention loss (each word's cross-attention inside its region, not outside), with the
//      Attend-and-Excite refinement at 0 %, 20 % and 40 % of the steps. The gradient runs on sub-windows of
//      refocus-frames frames, each with its own loss (memory), with cross-frame attention among its frames.
//   2. Invariant-region joint sampling: outside the union of the regions the step starts from the source latent
//      re-noised to the step's timestep, √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε with ε drawn from the seed and the step (runs
//      repeat), so the background follows the source and the seam with the regions harmonises.
// Cross-frame attention as in mode=baseline; the whole latent at every step.
import StableDiffusion
import TensorKernels

final class ReAtCoMethod: EditMethod {
    struct Config {
        var crossFrame: CrossFrameAttention
        var refocusing: AttentionRefocusing.Config
        /// Frames per gradient computation; 0 = the whole window.
        var subWindowFrames: Int
        var seed: UInt64
        /// The input-gradient weights of the model's convolutions, built once per editor.
        let weights: BackwardWeights

        init(_ settings: EditorSettings) {
            crossFrame = settings.crossFrame
            refocusing = AttentionRefocusing.Config(share: settings.refocusShare, scale: settings.refocusScale,
                                                    refinementIterations: settings.refocusIterations,
                                                    level: settings.refocusLevel,
                                                    smoothing: settings.refocusSmoothing)
            subWindowFrames = settings.refocusFrames
            seed = settings.seed
            weights = BackwardWeights()
        }
    }

    /// The deepest level with cross-attention whose maps are at least this many cells on the short side (ReAtCo
    /// reads SD 1.x's 16×16 maps at 512 px).
    static let automaticLevelCells = 16

    private let config: Config
    private let window: MethodWindow
    /// One refocusing per sub-window (nil where no word has a region in it), with its frame range.
    private let refocusing: [(frames: Range<Int>, refocus: AttentionRefocusing?)]
    /// Per frame (latent grid): 1 inside the union of the regions, 0 outside (no dilation).
    private let invariantMask: [[Float]]
    /// Per edit step, the loss before each of its refocusing updates (all sub-windows' summed per update round).
    private var losses: [[Float]] = []
    private var gradientCalls = 0

    init(_ config: Config, window: MethodWindow) {
        self.config = config
        self.window = window
        let (f, h, w) = (window.frames, window.latentHeight, window.latentWidth)
        guard let regions = window.inputs.regions else { preconditionFailure("mode=reatco without regions") }
        let unet = window.model
        let level = Self.level(config.refocusing.level, unet: unet, height: h, width: w)
        let grid = unet.crossAttentionGrid(level: level, height: h, width: w)
        let wordGrids = RegionWords.grid(regions.labels, words: regions.tokens.count, height: grid.height,
                                         width: grid.width)
        var refocusConfig = config.refocusing
        refocusConfig.level = level
        let target = window.inputs.target
        refocusing = Self.subWindows(frames: f, size: config.subWindowFrames).map { frames in
            // Each token of each word with a region somewhere in the sub-window is one term of its loss.
            var tokens: [Int] = [], masks: [[[Float]]] = []
            for (j, positions) in regions.tokens.enumerated() {
                let perFrame = Array(wordGrids[j][frames])
                guard perFrame.contains(where: { $0.contains(1) }) else { continue }
                for t in positions { tokens.append(t); masks.append(perFrame) }
            }
            guard !tokens.isEmpty, refocusConfig.share > 0 else { return (frames, nil) }
            let context = Ops.concat([Tensor](repeating: target, count: frames.count), dim: 0)
            let crossFrame = CrossFrameKeyValues(config.crossFrame, frames: frames.count, halves: 1)
            return (frames, AttentionRefocusing(config: refocusConfig, unet: unet, weights: config.weights,
                                                context: context,
                                                loss: ReAtCoAttentionLoss(tokenIndices: tokens, regions: masks),
                                                steps: window.editSteps, selfAttentionGroups: crossFrame.itemGroups))
        }
        let union = regions.labels.map { regions.union($0) }
        invariantMask = union.map { DiffusionWindowEditor.latentMasks($0, threshold: 128, width: w, height: h).hard }
    }

    func hooks(for call: UNetCall) -> WindowAttentionHooks {
        WindowAttentionHooks(crossFrame: CrossFrameKeyValues(config.crossFrame, for: call))
    }

    func latent(_ x: Tensor, beforeEditStep step: Int, timestep: Int) throws -> Tensor {
        // 1. Refocus, sub-window by sub-window.
        var refocused: [Tensor] = [], stepLosses: [Float] = []
        for (frames, refocus) in refocusing {
            let part = x.slice(first: frames.lowerBound, length: frames.count)
            guard let refocus else { refocused.append(part); continue }
            let r = try refocus(part, editStep: step, timestep: timestep, isCancelled: window.isCancelled)
            refocused.append(r.latent)
            gradientCalls += r.losses.count
            for (k, l) in r.losses.enumerated() {
                if k < stepLosses.count { stepLosses[k] += l } else { stepLosses.append(l) }
            }
        }
        losses.append(stepLosses)
        let moved = refocused.count == 1 ? refocused[0] : Ops.concat(refocused, dim: 0)
        // 2. Outside the regions: the source, re-noised to `timestep`.
        let a = window.alphaCumprod(timestep)
        let noise = Tensor.randomNormal(shape: x.shape, seed: config.seed &+ 0x5EED &* UInt64(step + 1))
        let source = window.inputs.latents
        let out = moved.copy()
        let cells = x.shape[2] * x.shape[3], perFrame = x.shape[1] * cells
        let (sa, sb) = (a.squareRoot(), (1 - a).squareRoot())
        for i in 0..<out.count {
            let (frame, cell) = (i / perFrame, i % cells)
            if invariantMask[frame][cell] == 0 { out.data[i] = sa * source.data[i] + sb * noise.data[i] }
        }
        withExtendedLifetime((source, noise)) {}
        return out
    }

    func addCounts(to report: inout SamplingReport) {
        report.refocusLosses = losses
        report.refocusGradients += gradientCalls
    }

    /// `requested`, or with −1 the deepest level with cross-attention whose grid has at least
    /// `automaticLevelCells` on its short side (level 0's grid when none has).
    static func level(_ requested: Int, unet: UNet2DConditionModel, height: Int, width: Int) -> Int {
        if requested >= 0 { return requested }
        let levels = (0..<unet.config.blockOutChannels.count).filter {
            !unet.crossAttentionLayerNames(level: $0).isEmpty
        }
        let fine = levels.filter {
            let g = unet.crossAttentionGrid(level: $0, height: height, width: width)
            return min(g.height, g.width) >= automaticLevelCells
        }
        return fine.last ?? levels.first ?? 0
    }

    /// `frames` cut into consecutive sub-windows of at most `size` frames (0: one), of sizes as even as possible.
    static func subWindows(frames: Int, size: Int) -> [Range<Int>] {
        let count = size > 0 ? max(1, (frames + size - 1) / size) : 1
        return (0..<count).map { k in (k * frames / count)..<((k + 1) * frames / count) }
    }
}
