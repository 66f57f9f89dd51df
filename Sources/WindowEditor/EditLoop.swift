// The DDIM edit of one window, the same for every method. The recipe:
//   1. Invert: DDIM steps from the clean latents up toward noise under the source prompt, every level kept (the
//      inverted trajectory); or, inversion=ddpm, the clean latents noised to each level and each step's noise map.
//   2. Edit: guided DDIM steps back down under the target prompt, edit step j starting where inversion step
//      editSteps − 1 − j ended (or from the latent the method makes of it: mode=reatco refocuses it).
//   3. Blend: after each edit step, outside the edit region, the latent is the trajectory's level.
// The method (EditMethod.swift) decides where the steps compute (the whole latent or boxes around the crops, and
// for the first edit steps a crop of each frame), the attention hooks of each UNet call and the edit region of each
// step. Whatever the method, with attention-reuse the inversion's self-attention maps steer the first edit steps
// (SelfAttentionMapReuse.swift), and with deep-cache-interval the edit steps between full UNet calls reuse their deep
// features (DeepCache).
import StableDiffusion
import TensorKernels

final class EditLoop {
    /// The loop's settings, for the editor's lifetime.
    struct Config {
        var steps: Int
        var strength: Double
        var guidanceScale: Double
        var guidanceShare: Double
        var inversionIterations: Int
        var inversion: InversionKind
        var seed: UInt64
        var preserveBackground: Bool
        var attentionReuse: SelfAttentionMaps.Config
        var deepCacheInterval: Int
        var deepCacheBranch: Int
        var deepCacheInversion: Bool

        init(_ settings: EditorSettings) {
            steps = settings.steps
            strength = settings.strength
            guidanceScale = settings.guidanceScale
            guidanceShare = settings.guidanceShare
            inversionIterations = settings.inversionIterations
            inversion = settings.inversion
            seed = settings.seed
            preserveBackground = settings.preserveBackground
            attentionReuse = SelfAttentionMaps.Config(settings)
            deepCacheInterval = settings.deepCacheInterval
            deepCacheBranch = settings.deepCacheBranch
            deepCacheInversion = settings.deepCacheInversion
        }
    }

    let unet: UNet2DConditionModel
    let scheduler: DDIMScheduler
    let config: Config
    /// What the last run spent (a cancelled run's part included).
    private(set) var report = SamplingReport()
    /// Where the last run let the latent change: the method's last edit region (the inputs' without blending).
    private(set) var editedRegion: [[Float]] = []
    /// The automatic mask the last run's method found, if any (latent grid, undilated), for the composite.
    private(set) var automaticMask: [[Float]]? = nil

    init(unet: UNet2DConditionModel, scheduler: DDIMScheduler, config: Config) {
        self.unet = unet
        self.scheduler = scheduler
        self.config = config
    }

    /// Denoising steps actually run for `strength` (diffusers' img2img rule: ⌊steps·strength⌋ of the schedule's end).
    static func editSteps(steps: Int, strength: Double) -> Int { min(steps, max(0, Int(Double(steps) * strength))) }

    /// Edits the window; returns its latents [F, 4, h, w]. `makeMethod` builds the window's method.
    func run(_ inputs: SamplingInputs, method makeMethod: EditMethodMaker,
             isCancelled: @escaping @Sendable () -> Bool) throws -> Tensor {
        report = SamplingReport()
        editedRegion = inputs.editRegion
        automaticMask = nil
        let steps = max(1, config.steps)
        let editSteps = Self.editSteps(steps: steps, strength: config.strength)
        guard editSteps > 0 else { return inputs.latents.copy() }
        let scheduler = self.scheduler
        let method = makeMethod(MethodWindow(inputs: inputs, editSteps: editSteps, model: unet,
                                             alphaCumprod: { scheduler.alphasCumprod[$0] }, isCancelled: isCancelled))
        let maps = SelfAttentionMaps(config.attentionReuse, editSteps: editSteps)
        let predictor = NoisePredictor(unet: unet, method: method, maps: maps, inputs: inputs,
                                       guidanceScale: config.guidanceScale,
                                       guidedSteps: Int((Double(editSteps) * config.guidanceShare).rounded()),
                                       isCancelled: isCancelled)
        defer { predictor.addCounts(to: &report); method.addCounts(to: &report) }
        let timesteps = Array(scheduler.timesteps(steps: steps)[(steps - editSteps)...])
        let run = RunContext(method: method, predictor: predictor, steps: steps, editSteps: editSteps,
                            timesteps: timesteps, editRegion: inputs.editRegion, saliency: inputs.saliency,
                            noisedLevels: config.inversion == .ddpm ? noisedLevels(inputs.latents, timesteps) : nil)
        let plan = method.plan
        let (h, w) = (inputs.latents.shape[2], inputs.latents.shape[3])
        let whole = LatentView(boxes: nil, height: h, width: w, isBackground: true)
        let joint = LatentView(boxes: plan.jointBoxes, height: h, width: w, isBackground: true)
        let crops = LatentView(boxes: plan.crops, height: h, width: w, isBackground: plan.crops == nil)
        let cropSteps = plan.crops == nil ? 0 : plan.cropSteps
        report.cropFraction = plan.crops.map { Double($0[0].area) / Double(h * w) } ?? 1
        report.jointFraction = plan.jointBoxes.map { Double($0[0].area) / Double(h * w) } ?? 1
        report.foregroundSteps = cropSteps
        report.jointSteps = editSteps - cropSteps

        // 1. Invert the joint part (the whole latent, or boxes around the crops) up to the crops' level (all the way
        //    without crops): the background's trajectory.
        let background = try invert(joint.cut(inputs.latents, from: whole), steps: 0..<(editSteps - cropSteps),
                                    in: joint, unetSteps: plan.backgroundUNetSteps, run)
        // 2. Invert the crops the rest of the way (no steps without crops).
        let foreground = try invert(crops.cut(background.last, from: joint), steps: (editSteps - cropSteps)..<editSteps,
                                    in: crops, unetSteps: nil, run)
        // 3. Edit the crops, each step blended with the crops' trajectory.
        let editedCrops = try denoise(foreground.last, steps: 0..<cropSteps, along: foreground, in: crops, run)
        // 4. Paste them into the background's level and edit the joint part, each step blended with the background's
        //    trajectory.
        let editedJoint = try denoise(crops.paste(editedCrops, into: background.last, of: joint),
                                      steps: cropSteps..<editSteps, along: background, in: joint, run)
        // 5. Outside the joint part the latent is the input's (as the blend leaves it inside, outside the edit region).
        let edited = joint.paste(editedJoint, into: inputs.latents, of: whole)
        automaticMask = method.automaticMask
        report.automaticMaskCoverage = automaticMask.map { Double($0.joined().reduce(0, +)) / Double($0.count * h * w) }
        return edited
    }

    /// Inversion steps `steps` on `view` from `start` (step k takes level k to k + 1 at the timestep of edit step
    /// editSteps − 1 − k). The UNet runs at the steps in `unetSteps` (nil: all); the others reuse its last
    /// prediction. Each step the UNet runs at is refined toward a fixed point, x_t = inv(ε(x_t, t), x), iterated
    /// inversion-iterations − 1 times from the DDIM guess, so the denoising step (which evaluates ε at x_t)
    /// retraces it. With deep-cache-inversion the calls take step caching as the edit's do, in inversion order.
    private func invert(_ start: Tensor, steps: Range<Int>, in view: LatentView, unetSteps: Set<Int>?,
                        _ run: RunContext) throws -> Trajectory {
        if let levels = run.noisedLevels {
            return try invertByNoising(levels, start, steps: steps, in: view, unetSteps: unetSteps, run)
        }
        var trajectory = Trajectory(firstLevel: steps.lowerBound, latents: [start])
        let saliency = view.cut(run.saliency)
        let deepFeatures = UNetDeepFeatures(branch: config.deepCacheBranch)
        var noise: Tensor? = nil
        var calls = 0
        for k in steps {
            let (x, j) = (trajectory.last, run.editSteps - 1 - k)
            let t = run.timesteps[j]
            let runsUNet = unetSteps?.contains(k) ?? true
            // deep-cache-inversion: the phase's UNet calls in their own order, the first full (the lowest level).
            let use = config.deepCacheInversion ? deepCacheUse(step: calls, deepFeatures) : nil
            if runsUNet || noise == nil {
                noise = try run.predictor(x, .inversion, editStep: j, timestep: t, saliency: saliency,
                                          deepFeatures: use)
                calls += 1
                if view.isBackground { report.backgroundInversionSteps += 1 }
            }
            var next = scheduler.inversionStep(modelOutput: noise!, timestep: t, sample: x, steps: run.steps)
            if runsUNet {
                for _ in 1..<max(1, config.inversionIterations) {
                    let e = try run.predictor(next, .inversionRefinement, editStep: j, timestep: t,
                                              saliency: saliency, deepFeatures: use.map { _ in .reuse(deepFeatures) })
                    next = scheduler.inversionStep(modelOutput: e, timestep: t, sample: x, steps: run.steps)
                }
            }
            trajectory.latents.append(next)
        }
        return trajectory
    }

    /// inversion=ddpm: level L (1…editSteps) is the clean latent noised to its timestep (edit step editSteps − L's,
    /// `timesteps` being the edit's) with its own seeded noise, one for every frame (level 0 is the clean latent), on
    /// the whole latent.
    private func noisedLevels(_ latents: Tensor, _ timesteps: [Int]) -> [Tensor] {
        let editSteps = timesteps.count
        let (f, c, h, w) = (latents.shape[0], latents.shape[1], latents.shape[2], latents.shape[3])
        return [latents] + (1...editSteps).map { level in
            let a = scheduler.alphasCumprod[timesteps[editSteps - level]]
            let one = Tensor.randomNormal(shape: [1, c, h, w], seed: config.seed &* 7919 &+ UInt64(level))
            let noise = Ops.concat([Tensor](repeating: one, count: f), dim: 0)
            return Ops.add(Ops.scale(latents, a.squareRoot()), Ops.scale(noise, (1 - a).squareRoot()))
        }
    }

    /// Edit-friendly DDPM inversion of steps `steps` on `view`: the levels are `levels` cut to the view; step k
    /// keeps the noise map under which a DDPM step from level k + 1 (ε under the source prompt) lands on level k.
    /// The levels need no sequence, so ε is taken in the order the edit's steps run, with the same step caching:
    /// an edit under the source prompt then retraces the levels exactly, step caching included.
    private func invertByNoising(_ levels: [Tensor], _ start: Tensor, steps: Range<Int>, in view: LatentView,
                                 unetSteps: Set<Int>?, _ run: RunContext) throws -> Trajectory {
        var trajectory = Trajectory(firstLevel: steps.lowerBound, latents: [start])
        let saliency = view.cut(run.saliency)
        let whole = LatentView(boxes: nil, height: levels[0].shape[2], width: levels[0].shape[3], isBackground: true)
        let deepFeatures = UNetDeepFeatures(branch: config.deepCacheBranch)
        var noise: Tensor? = nil
        var maps: [Tensor] = []
        for k in steps.reversed() {
            let (j, x) = (run.editSteps - 1 - k, view.cut(levels[k + 1], from: whole))
            let t = run.timesteps[j]
            if unetSteps?.contains(k) ?? true || noise == nil {
                noise = try run.predictor(x, .inversion, editStep: j, timestep: t, saliency: saliency,
                                          deepFeatures: deepCacheUse(step: steps.upperBound - 1 - k, deepFeatures))
                if view.isBackground { report.backgroundInversionSteps += 1 }
            }
            maps.append(scheduler.varianceNoise(modelOutput: noise!, timestep: t, sample: x,
                                                previous: view.cut(levels[k], from: whole), steps: run.steps, eta: 1))
        }
        trajectory.noiseMaps = maps.reversed()
        trajectory.latents += steps.map { view.cut(levels[$0 + 1], from: whole) }
        return trajectory
    }

    /// DeepCache's use of the UNet at the `step`-th step of a phase: with deep-cache-interval k > 1, steps k·i run
    /// the whole UNet and keep its deep features, the steps between them reuse those; nil without caching.
    private func deepCacheUse(step: Int, _ features: UNetDeepFeatures) -> UNetDeepFeatures.Use? {
        guard config.deepCacheInterval > 1 else { return nil }
        return step % config.deepCacheInterval == 0 ? .record(features) : .reuse(features)
    }

    /// Edit steps `steps` on `view` from `start` (step j takes level editSteps − j to editSteps − 1 − j); with
    /// preserve-background each step's result outside the method's edit region is replaced by `trajectory`'s level.
    /// With deep-cache-interval k > 1, steps k·i of the phase run the whole UNet and keep its deep features, the
    /// steps between them reuse those (the view's size is fixed within the phase).
    private func denoise(_ start: Tensor, steps: Range<Int>, along trajectory: Trajectory, in view: LatentView,
                         _ run: RunContext) throws -> Tensor {
        var x = start
        let saliency = view.cut(run.saliency)
        let deepFeatures = UNetDeepFeatures(branch: config.deepCacheBranch)
        for j in steps {
            let t = run.timesteps[j]
            let use = deepCacheUse(step: j - steps.lowerBound, deepFeatures)
            x = try run.method.latent(x, beforeEditStep: j, timestep: t)
            let e = try run.predictor(x, .edit, editStep: j, timestep: t, saliency: saliency, deepFeatures: use)
            if let noise = trajectory.noise(step: run.editSteps - 1 - j) {
                x = scheduler.step(modelOutput: e, timestep: t, sample: x, steps: run.steps, eta: 1,
                                   varianceNoise: noise)
            } else {
                x = scheduler.step(modelOutput: e, timestep: t, sample: x, steps: run.steps)
            }
            if config.preserveBackground {
                editedRegion = run.method.editRegion(afterEditStep: j) ?? run.editRegion
                LatentRegions.blend(x, reference: trajectory[run.editSteps - 1 - j], masks: view.cut(editedRegion))
            }
        }
        return x
    }
}

/// What every phase of one run needs.
private struct RunContext {
    let method: any EditMethod
    let predictor: NoisePredictor
    /// Steps of the whole schedule (the scheduler's stride) and of the edit.
    let steps: Int, editSteps: Int
    /// Edit step j runs at timesteps[j] (descending).
    let timesteps: [Int]
    /// Per frame, whole latent grid: the inputs' edit region and saliency.
    let editRegion: [[Float]], saliency: [[Float]]
    /// inversion=ddpm: the noised levels 0…editSteps of the whole latent; nil: DDIM inversion.
    let noisedLevels: [Tensor]?
}

/// Latents at consecutive noise levels from `firstLevel` on, as an inversion left them.
private struct Trajectory {
    let firstLevel: Int
    var latents: [Tensor]
    /// inversion=ddpm: per inversion step from `firstLevel` on, the variance noise the edit's step adds.
    var noiseMaps: [Tensor] = []

    subscript(level: Int) -> Tensor { latents[level - firstLevel] }
    /// The noise map of inversion step `step` (levels step → step + 1), nil for DDIM.
    func noise(step: Int) -> Tensor? { noiseMaps.isEmpty ? nil : noiseMaps[step - firstLevel] }
    var last: Tensor { latents[latents.count - 1] }
}

/// The part of the latent a phase computes: the whole latent, or one box per frame (the crops, or the joint steps'
/// boxes around them).
private struct LatentView {
    /// Per frame, on the whole latent's grid; nil: the whole latent.
    let boxes: [LatentBox]?
    /// The whole latent's size.
    let height: Int, width: Int
    /// The background's view (the joint steps'), not the crops'.
    let isBackground: Bool

    /// Per-frame h×w maps → the view's part.
    func cut(_ maps: [[Float]]) -> [[Float]] {
        boxes.map { LatentRegions.crop(maps, height: height, width: width, $0) } ?? maps
    }

    /// `x`, latents [F, C, …] of `outer` (a view whose boxes hold this one's), → this view's part (`x` itself when
    /// both are the same).
    func cut(_ x: Tensor, from outer: LatentView) -> Tensor {
        guard let boxes = relativeBoxes(in: outer) else { return x }
        return LatentRegions.crop(x, boxes)
    }

    /// `part` (this view's) written into a copy of `x` (`outer`'s); `part` itself when both are the same.
    func paste(_ part: Tensor, into x: Tensor, of outer: LatentView) -> Tensor {
        guard let boxes = relativeBoxes(in: outer) else { return part }
        let copy = x.copy()
        LatentRegions.paste(part, into: copy, boxes)
        return copy
    }

    /// This view's boxes on `outer`'s grid; nil when the two views are the same.
    private func relativeBoxes(in outer: LatentView) -> [LatentBox]? {
        guard let boxes, boxes != outer.boxes else { return nil }
        guard let outerBoxes = outer.boxes else { return boxes }
        return zip(boxes, outerBoxes).map { LatentBox(x: $0.x - $1.x, y: $0.y - $1.y, width: $0.width,
                                                      height: $0.height) }
    }
}
