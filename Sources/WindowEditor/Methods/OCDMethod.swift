// mode=ocd: Object-Centric Diffusion. Object-centric sampling: the first `blend-step` share of the edit runs on each
// frame's foreground crop only, while the background follows its inverted trajectory (with `background-steps`, the
// UNet runs at only that many of its inversion steps); from then on the crops grown by `joint-margin` cells (the
// whole latent at −1) are denoised jointly. Token merging: self-attention keys/values merged within volumes of
// frames, foreground tokens protected by saliency (layers of at least 256 tokens per frame: the small joint boxes of
// a small latent may have none).

final class OCDMethod: EditMethod {
    struct Config {
        var crossFrame: CrossFrameAttention
        var objectCentricSampling: Bool
        /// Share of the edit steps run on the crops.
        var blendStep: Double
        var contextMargin: Int
        /// Cells around the crops that the joint steps compute; −1 = the whole latent.
        var jointMargin: Int
        /// UNet evaluations of the background's inversion; 0 = one per step.
        var backgroundSteps: Int
        /// nil when tome-ratio is 0.
        var merging: SaliencyMergedKeyValues.Config?
        /// The crop's sides are rounded up to a multiple of this many latent cells: with window-overlap, 4, so
        /// consecutive windows (whose largest mask boxes differ by a cell or so) mostly crop alike and their frames
        /// are edited alike at the boundary; else 1.
        var cropMultiple = 1

        init(_ settings: EditorSettings) {
            crossFrame = settings.crossFrame
            objectCentricSampling = settings.ocdSampling
            blendStep = settings.blendStep
            contextMargin = settings.contextMargin
            jointMargin = settings.jointMargin
            backgroundSteps = settings.backgroundSteps
            merging = settings.tomeRatio > 0 ? SaliencyMergedKeyValues.Config(settings) : nil
            cropMultiple = settings.windowOverlap > 0 ? 4 : 1
        }
    }

    let plan: SamplingPlan
    private let config: Config

    init(_ config: Config, window: MethodWindow) {
        self.config = config
        plan = Self.samplingPlan(config, window: window)
    }

    /// Crops: one common box size over the dilated edit region (plus the context margin), when it is smaller than
    /// the latent. Any size works: the UNet follows diffusers' `upsample_size` path when it is not a multiple of 8.
    static func samplingPlan(_ config: Config, window: MethodWindow) -> SamplingPlan {
        let (h, w, n) = (window.latentHeight, window.latentWidth, window.editSteps)
        guard config.objectCentricSampling else { return SamplingPlan() }
        let boxes = LatentRegions.commonBoxes(window.inputs.editRegion, height: h, width: w,
                                              margin: config.contextMargin, sizeMultiple: config.cropMultiple)
        guard boxes[0].area < h * w else { return SamplingPlan() }
        let cropSteps = min(n, max(0, Int((Double(n) * config.blendStep).rounded())))
        let wholeSteps = n - cropSteps
        var plan = SamplingPlan(crops: boxes, cropSteps: cropSteps)
        if config.jointMargin >= 0 {
            let joint = boxes.map { LatentRegions.grow($0, by: config.jointMargin, height: h, width: w) }
            if joint[0].area < h * w { plan.jointBoxes = joint }
        }
        // φ = whole steps / background-steps: the UNet runs at every φ-th inversion step of the background.
        if config.backgroundSteps > 0 && config.backgroundSteps < wholeSteps {
            let k = config.backgroundSteps
            plan.backgroundUNetSteps = Set((0..<k).map { $0 * wholeSteps / k })
        }
        return plan
    }

    func hooks(for call: UNetCall) -> WindowAttentionHooks {
        let crossFrame = CrossFrameKeyValues(config.crossFrame, for: call)
        return WindowAttentionHooks(
            crossFrame: crossFrame,
            merging: config.merging.map { SaliencyMergedKeyValues($0, crossFrame: crossFrame, call: call) })
    }
}
