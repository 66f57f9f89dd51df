// The UNet as the edit loop calls it: one noise prediction per call, with the method's attention hooks for the call,
// the source prompt for inversion and classifier-free guidance toward the target prompt for edit steps.
import StableDiffusion
import TensorKernels

final class NoisePredictor {
    private let unet: UNet2DConditionModel
    private let method: any EditMethod
    /// Self-attention map reuse across the window's calls, whatever the method (nil: off).
    private let maps: SelfAttentionMaps?
    /// Prompt embeddings [1, 77, D].
    private let source: Tensor, target: Tensor, negative: Tensor
    private let guidanceScale: Double
    /// Edit steps before this one are guided (guidance-share); the later ones take the target prompt's prediction.
    private let guidedSteps: Int
    private let isCancelled: @Sendable () -> Bool
    private(set) var unetCalls = 0, unetTokenSteps = 0, attentionPairs = 0, mergedTokens = 0
    private(set) var shallowUNetCalls = 0, shallowTokenSteps = 0

    init(unet: UNet2DConditionModel, method: any EditMethod, maps: SelfAttentionMaps?, inputs: SamplingInputs,
         guidanceScale: Double, guidedSteps: Int, isCancelled: @escaping @Sendable () -> Bool) {
        self.unet = unet
        self.method = method
        self.maps = maps.flatMap { $0.isEnabled ? $0 : nil }
        (source, target, negative) = (inputs.source, inputs.target, inputs.negative)
        self.guidanceScale = guidanceScale
        self.guidedSteps = guidedSteps
        self.isCancelled = isCancelled
    }

    /// ε for the latents `x` [F, 4, h, w] at `timestep`; `saliency` per frame at h×w. Edit calls run the batch
    /// twice (negative and target prompt) when the guidance scale is above 1 and the step is among the guided ones.
    /// `deepFeatures`: DeepCache's use of the UNet for this call (nil: a plain full call); an unguided shallow call
    /// after a guided full call reuses the target half's features.
    func callAsFunction(_ x: Tensor, _ pass: UNetCall.Pass, editStep: Int, timestep: Int,
                        saliency: [[Float]], deepFeatures: UNetDeepFeatures.Use? = nil) throws -> Tensor {
        if isCancelled() { throw EditCancelled() }
        let frames = x.shape[0], height = x.shape[2], width = x.shape[3]
        let guided = pass == .edit && guidanceScale > 1 && editStep < guidedSteps
        var deepFeatures = deepFeatures
        if !guided, case .reuse(let store) = deepFeatures, store.batchSize == 2 * frames {
            deepFeatures = .reuse(store.lastItems(frames))
        }
        let call = UNetCall(pass: pass, editStep: editStep, timestep: timestep, frames: frames,
                            halves: guided ? 2 : 1, height: height, width: width, saliency: saliency)
        let hooks = method.hooks(for: call)
        if let maps { hooks.mapReuse = SelfAttentionMapReuse(maps: maps, call: call) }
        let prompt = pass == .edit ? target : source
        let sample = guided ? Ops.concat([x, x], dim: 0) : x
        let context = guided ? Ops.concat([repeated(negative, frames), repeated(prompt, frames)], dim: 0)
                             : repeated(prompt, frames)
        let eps = unet(sample, timesteps: [Float](repeating: Float(timestep), count: sample.shape[0]),
                       encoderHiddenStates: context, hooks: hooks, deepFeatures: deepFeatures)
        unetCalls += 1
        if pass == .edit { maps?.release(before: editStep + 1) }
        let tokenSteps = sample.shape[0] * height * width
        if case .reuse = deepFeatures {
            shallowUNetCalls += 1
            shallowTokenSteps += tokenSteps
        } else {
            unetTokenSteps += tokenSteps
        }
        attentionPairs += hooks.attentionPairs
        mergedTokens += hooks.mergedTokens
        guard guided else { return eps }
        let halves = Ops.split(eps, dim: 0, sizes: [frames, frames])
        method.observeGuidance(call, unconditional: halves[0], conditional: halves[1])
        return Ops.guide(halves[0], toward: halves[1], scale: Float(guidanceScale))
    }

    /// Adds the calls' figures to `report`.
    func addCounts(to report: inout SamplingReport) {
        report.unetCalls += unetCalls
        report.unetTokenSteps += unetTokenSteps
        report.shallowUNetCalls += shallowUNetCalls
        report.shallowTokenSteps += shallowTokenSteps
        report.attentionPairs += attentionPairs
        report.mergedTokens += mergedTokens
    }

    private func repeated(_ e: Tensor, _ count: Int) -> Tensor {
        if count == 1 { return e }
        return Ops.concat([Tensor](repeating: e, count: count), dim: 0)
    }
}
