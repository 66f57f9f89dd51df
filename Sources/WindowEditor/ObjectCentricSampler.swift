// DDIM inversion and guided denoising of one window, with object-centric sampling: the first part of the edit runs
// on each frame's foreground crop only, the background follows its inverted trajectory, and from the blend step on
// the full frame is denoised jointly.
import Foundation
import StableDiffusion
import TensorKernels

/// What the sampler spent: the figures `ocdedit bench edit` reports.
public struct SamplingReport: Sendable {
    public var unetCalls = 0
    /// Σ over UNet calls of batch × latent height × latent width.
    public var unetTokenSteps = 0
    /// Σ of self-attention query×key pairs.
    public var attentionPairs = 0
    /// Key/value tokens removed by merging (summed over layers and calls).
    public var mergedTokens = 0
    /// The foreground crop, as a share of the latent (1 = no crop).
    public var cropFraction = 1.0
    public var foregroundSteps = 0, jointSteps = 0, backgroundInversionSteps = 0
    /// mode=blended: share of the latent the automatic mask kept (before dilation), nil in other modes.
    public var automaticMaskCoverage: Double? = nil
}

/// The window in latent space, prepared by the editor.
struct SamplingInputs {
    /// Clean latents [F, 4, h, w], already × scaling factor.
    var latents: Tensor
    /// Per frame (h×w): 1 where the latent may change (dilated mask at the threshold), 0 where it follows the source.
    var editRegion: [[Float]]
    /// Per frame (h×w): soft saliency in [0, 1] for token merging.
    var saliency: [[Float]]
    /// Prompt embeddings [1, 77, D].
    var source: Tensor, target: Tensor, negative: Tensor
    /// mode=blended: context positions of the edited words, and the dilation (latent cells) that makes the
    /// automatic mask cover the composite's feathered edge.
    var blendTokens: [Int] = []
    var regionDilation = 1
}

final class ObjectCentricSampler {
    let unet: UNet2DConditionModel
    let scheduler: DDIMScheduler
    let settings: EditorSettings
    private(set) var report = SamplingReport()
    /// Where the last run let the latent change: the inputs' edit region, in mode=blended intersected with the
    /// (dilated) automatic mask.
    private(set) var editedRegion: [[Float]] = []
    /// mode=blended: the automatic mask of the last run (latent grid, undilated), for the composite.
    private(set) var automaticMask: [[Float]]? = nil

    init(unet: UNet2DConditionModel, scheduler: DDIMScheduler, settings: EditorSettings) {
        self.unet = unet
        self.scheduler = scheduler
        self.settings = settings
    }

    /// Denoising steps actually run for `strength` (diffusers' img2img rule: ⌊steps·strength⌋ of the schedule's end).
    static func editSteps(steps: Int, strength: Double) -> Int { min(steps, max(0, Int(Double(steps) * strength))) }

    func run(_ inputs: SamplingInputs, isCancelled: @escaping @Sendable () -> Bool) throws -> Tensor {
        report = SamplingReport()
        editedRegion = inputs.editRegion
        automaticMask = nil
        let z0 = inputs.latents
        let (h, w) = (z0.shape[2], z0.shape[3])
        let steps = max(1, settings.steps)
        let n = Self.editSteps(steps: steps, strength: settings.strength)
        guard n > 0 else { return z0.copy() }
        let schedule = scheduler.timesteps(steps: steps)
        let ts = Array(schedule[(steps - n)...])          // descending: the edit's timesteps
        let tsUp = Array(ts.reversed())                     // ascending: inversion's
        let useOCD = settings.mode == .ocd
        let mergeRatio = useOCD ? settings.tomeRatio : 0

        // Object-centric sampling: a crop smaller than the latent, and how many steps run on it.
        var boxes: [LatentBox]? = nil
        if useOCD && settings.ocdSampling {
            // Any crop size: the UNet follows diffusers' `upsample_size` path when it is not a multiple of 8.
            let b = LatentRegions.commonBoxes(inputs.editRegion, height: h, width: w, margin: settings.contextMargin,
                                              multiple: 1)
            if b[0].area < h * w { boxes = b }
        }
        let n1 = boxes == nil ? 0 : min(n, max(0, Int((Double(n) * settings.blendStep).rounded())))
        let n2 = n - n1
        if let boxes { report.cropFraction = Double(boxes[0].area) / Double(h * w) }
        report.foregroundSteps = n1
        report.jointSteps = n2

        let halves = settings.guidanceScale > 1 ? 2 : 1
        let blendMask = settings.mode == .blended
            ? AutomaticBlendMask(tokens: inputs.blendTokens, frames: z0.shape[0], latentHeight: h, latentWidth: w,
                                 unet: unet.config, threshold: Float(settings.blendThreshold))
            : nil
        // `step` seeds token-merge destinations: the timestep, so inversion and denoising at t pair tokens alike.
        let tokenFlow = settings.mode == .tokenflow
            ? TokenFlowPropagation(frames: z0.shape[0], steps: n, interval: settings.keyframeInterval, seed: settings.seed)
            : nil
        // `recordFor`: the edit step whose TokenFlow source features this inversion call provides; `propagateAt`: the
        // edit step this call is.
        func predict(_ x: Tensor, _ t: Int, prompt: Tensor, guided: Bool, saliency: [[Float]], step: Int,
                     recordFor: Int? = nil, propagateAt: Int? = nil) throws -> Tensor {
            if isCancelled() { throw EditCancelled() }
            let frames = x.shape[0], lh = x.shape[2], lw = x.shape[3]
            let cfg = guided && halves == 2
            let hooks = WindowAttention(frames: frames, halves: cfg ? 2 : 1, settings: settings, merge: mergeRatio > 0,
                                        saliency: saliency, height: lh, width: lw,
                                        seed: settings.seed &+ UInt64(step) &* 0x2545_F491_4F6C_DD1D)
            if guided { hooks.blendMask = blendMask }
            if let tokenFlow {
                hooks.tokenFlow = tokenFlow
                hooks.tokenFlowRecordStep = recordFor
                hooks.tokenFlowStep = propagateAt
            }
            let sample = cfg ? Ops.concat([x, x], dim: 0) : x
            let context = cfg ? Ops.concat([repeated(inputs.negative, frames), repeated(prompt, frames)], dim: 0)
                              : repeated(prompt, frames)
            let eps = unet(sample, timesteps: [Float](repeating: Float(t), count: sample.shape[0]),
                           encoderHiddenStates: context, hooks: hooks)
            report.unetCalls += 1
            report.unetTokenSteps += sample.shape[0] * lh * lw
            report.attentionPairs += hooks.attentionPairs
            report.mergedTokens += hooks.mergedTokens
            guard cfg else { return eps }
            let parts = Ops.split(eps, dim: 0, sizes: [frames, frames])
            return Ops.guide(parts[0], toward: parts[1], scale: Float(settings.guidanceScale))
        }

        // Fixed-point inversion: x_t = inv(ε(x_t, t), x_cur), iterated from the plain DDIM guess, so the denoising
        // step (which evaluates ε at x_t) retraces the inversion step.
        func refine(_ guess: Tensor, from current: Tensor, _ t: Int, saliency: [[Float]], step: Int) throws -> Tensor {
            var x = guess
            for _ in 1..<max(1, settings.inversionIterations) {
                let e = try predict(x, t, prompt: inputs.source, guided: false, saliency: saliency, step: step)
                x = scheduler.inversionStep(modelOutput: e, timestep: t, sample: current, steps: steps)
            }
            return x
        }

        // 1. Inversion of the full frame up to the blend level (the background trajectory); with `background-steps`
        //    the UNet runs only that many times and the steps between reuse its last prediction.
        var full: [Tensor] = [z0]
        var x = z0
        let evaluated: Set<Int> = {
            guard boxes != nil, settings.backgroundSteps > 0, settings.backgroundSteps < n2 else { return Set(0..<n2) }
            let k = settings.backgroundSteps
            return Set((0..<k).map { $0 * n2 / k })
        }()
        var eps: Tensor? = nil
        for k in 0..<n2 {
            if evaluated.contains(k) || eps == nil {
                // Edit step n−1−k runs at this timestep: its TokenFlow correspondences come from these features.
                eps = try predict(x, tsUp[k], prompt: inputs.source, guided: false, saliency: inputs.saliency, step: tsUp[k],
                                  recordFor: n - 1 - k)
                report.backgroundInversionSteps += 1
            }
            var next = scheduler.inversionStep(modelOutput: eps!, timestep: tsUp[k], sample: x, steps: steps)
            if evaluated.contains(k) {
                next = try refine(next, from: x, tsUp[k], saliency: inputs.saliency, step: tsUp[k])
            }
            x = next
            full.append(x)
        }
        // 2. Inversion of the foreground crops the rest of the way.
        var cropped: [Tensor] = []
        var cropRegion: [[Float]] = [], cropSaliency: [[Float]] = []
        if let boxes {
            cropRegion = LatentRegions.crop(inputs.editRegion, height: h, width: w, boxes)
            cropSaliency = LatentRegions.crop(inputs.saliency, height: h, width: w, boxes)
            var xc = LatentRegions.crop(x, boxes)
            cropped = [xc]
            for k in n2..<n {
                let e = try predict(xc, tsUp[k], prompt: inputs.source, guided: false, saliency: cropSaliency, step: tsUp[k])
                let next = scheduler.inversionStep(modelOutput: e, timestep: tsUp[k], sample: xc, steps: steps)
                xc = try refine(next, from: xc, tsUp[k], saliency: cropSaliency, step: tsUp[k])
                cropped.append(xc)
            }
        }
        // 3. Edit: foreground crops first, then the full frame jointly.
        let preserve = settings.preserveBackground
        var xc = cropped.last
        for j in 0..<n1 {
            let e = try predict(xc!, ts[j], prompt: inputs.target, guided: true, saliency: cropSaliency, step: ts[j])
            xc = scheduler.step(modelOutput: e, timestep: ts[j], sample: xc!, steps: steps)
            if preserve { LatentRegions.blend(xc!, reference: cropped[n - 1 - j - n2], masks: cropRegion) }
        }
        if let boxes, let xc {
            x = full[n2].copy()
            LatentRegions.paste(xc, into: x, boxes)
        } else {
            x = full[n]
        }
        // mode=blended: from 20 % of the steps on, the automatic mask (recomputed each step until 80 %, then kept)
        // narrows the edit region (with preserve-background=false nothing is blended and the whole frame is edited).
        let blendStart = Int((Double(n) * 0.2).rounded()), blendEnd = max(blendStart + 1, Int((Double(n) * 0.8).rounded()))
        for j in n1..<n {
            let e = try predict(x, ts[j], prompt: inputs.target, guided: true, saliency: inputs.saliency, step: ts[j],
                                propagateAt: j)
            x = scheduler.step(modelOutput: e, timestep: ts[j], sample: x, steps: steps)
            if preserve, let blendMask, j >= blendStart, j < blendEnd || automaticMask == nil {
                let auto = blendMask.latentMask(height: h, width: w)
                automaticMask = auto
                editedRegion = zip(auto, inputs.editRegion).map { a, r in
                    zip(LatentRegions.dilate(a, height: h, width: w, radius: inputs.regionDilation), r).map { min($0, $1) }
                }
                report.automaticMaskCoverage = Double(auto.joined().reduce(0, +)) / Double(auto.count * h * w)
            }
            if preserve { LatentRegions.blend(x, reference: full[n - 1 - j], masks: editedRegion) }
        }
        return x
    }

    private func repeated(_ e: Tensor, _ count: Int) -> Tensor {
        if count == 1 { return e }
        return Ops.concat([Tensor](repeating: e, count: count), dim: 0)
    }
}
