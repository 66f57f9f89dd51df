// mode=baseline: the plain edit (DDIM inversion of the whole latent, guided denoising, every step blended with the
// inverted trajectory outside the dilated input mask) with cross-frame attention; no object-centric sampling, no
// token merging. What the other methods are measured against.

final class BaselineMethod: EditMethod {
    struct Config {
        var crossFrame: CrossFrameAttention

        init(_ settings: EditorSettings) { crossFrame = settings.crossFrame }
    }

    private let config: Config

    init(_ config: Config) { self.config = config }

    func hooks(for call: UNetCall) -> WindowAttentionHooks {
        WindowAttentionHooks(crossFrame: CrossFrameKeyValues(config.crossFrame, for: call))
    }
}
