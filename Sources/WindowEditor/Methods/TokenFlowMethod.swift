// mode=tokenflow: keyframe editing with feature propagation (TokenFlowPropagation.swift). Each inversion step
// records the source features the edit step at its timestep matches against; each edit step computes the keyframes'
// self-attention and gathers every other frame's from theirs.

final class TokenFlowMethod: EditMethod {
    struct Config {
        var crossFrame: CrossFrameAttention
        var keyframeInterval: Int
        /// Seeds the keyframes' random offsets.
        var seed: UInt64

        init(_ settings: EditorSettings) {
            crossFrame = settings.crossFrame
            keyframeInterval = settings.keyframeInterval
            seed = settings.seed
        }
    }

    private let config: Config
    private let flow: TokenFlowPropagation

    init(_ config: Config, window: MethodWindow) {
        self.config = config
        flow = TokenFlowPropagation(frames: window.frames, steps: window.editSteps, interval: config.keyframeInterval,
                                    seed: config.seed)
    }

    func hooks(for call: UNetCall) -> WindowAttentionHooks {
        WindowAttentionHooks(
            crossFrame: CrossFrameKeyValues(config.crossFrame, for: call),
            featureRecorder: call.pass == .inversion ? TokenFlowRecorder(flow: flow, editStep: call.editStep) : nil,
            propagation: call.pass == .edit
                ? TokenFlowPropagator(flow: flow, editStep: call.editStep, halves: call.halves) : nil)
    }
}
