// mode=baseline: the plain edit (DDIM inversion of the whole latent, guided denoising, every step blended with the
// inverted trajectory outside the dilated input mask) with cross-frame attention; no object-centric sampling, no
// token merging. What the other methods are measured against.

final class BaselineMethod: EditMethod {
    struct Config {
        var crossFrame: CrossFrameAttention

        init(_ settings: EditorSettings) { crossFrame = settings.crossFrame }
    }

    let plan = SamplingPlan()
    let automaticMask: [[Float]]? = nil
    private let config: Config
    private let region: [[Float]]

    init(_ config: Config, window: MethodWindow) {
        self.config = config
        region = window.inputs.editRegion
    }

    func hooks(for call: UNetCall) -> WindowAttentionHooks {
        WindowAttentionHooks(crossFrame: CrossFrameKeyValues(config.crossFrame, for: call))
    }

    func editRegion(afterEditStep step: Int) -> [[Float]] { region }
}
