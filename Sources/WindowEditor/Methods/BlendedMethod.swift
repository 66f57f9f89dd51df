// mode=blended: blended latent diffusion with an automatic mask. The guided edit calls sum |ε(target) − ε(negative)|
// per cell (GuidanceDifferenceMask.swift, DiffEdit's mask); without guidance (guidance-scale 1) the target prompt's
// cross-attention to the edited words stands in (AutomaticBlendMask.swift, FateZero's mask). From 20 % of the steps
// on, the mask found so far, dilated to cover the composite's feathered edge, narrows the edit region: recomputed
// after each step until 80 %, then kept (FateZero's LocalBlend window).
import TensorKernels

final class BlendedMethod: EditMethod {
    struct Config {
        var crossFrame: CrossFrameAttention
        /// Share of a frame's map (scaled to [0, 1]) at or above which a cell is in the automatic mask.
        var threshold: Float
        /// The shares of the edit steps between which the automatic mask is recomputed.
        var maskStart = 0.2, maskEnd = 0.8

        init(_ settings: EditorSettings) {
            crossFrame = settings.crossFrame
            threshold = Float(settings.blendThreshold)
        }
    }

    private(set) var automaticMask: [[Float]]? = nil
    private let config: Config
    private let mask: AutomaticBlendMask
    private let difference: GuidanceDifferenceMask
    private let inputRegion: [[Float]]
    private var region: [[Float]]
    private let height: Int, width: Int, dilation: Int
    /// Edit steps from `firstMaskStep` on use the automatic mask; it is recomputed before `lastMaskStep`.
    private let firstMaskStep: Int, lastMaskStep: Int

    init(_ config: Config, window: MethodWindow) {
        self.config = config
        let inputs = window.inputs
        (height, width, dilation) = (window.latentHeight, window.latentWidth, inputs.regionDilation)
        let words = AutomaticBlendMask.editedTokenPositions(source: inputs.sourceTokens, target: inputs.targetTokens)
        mask = AutomaticBlendMask(tokens: words, frames: window.frames, latentHeight: height, latentWidth: width,
                                  unet: window.unet, threshold: config.threshold)
        difference = GuidanceDifferenceMask(frames: window.frames, height: height, width: width,
                                            threshold: config.threshold)
        inputRegion = inputs.editRegion
        region = inputs.editRegion
        let n = Double(window.editSteps)
        firstMaskStep = Int((n * config.maskStart).rounded())
        lastMaskStep = max(firstMaskStep + 1, Int((n * config.maskEnd).rounded()))
    }

    /// Cross-attention is recorded in unguided edit calls only: a guided call's two halves give DiffEdit's mask,
    /// which then stands for the window, and the maps would cost a second attention product per recorded layer.
    func hooks(for call: UNetCall) -> WindowAttentionHooks {
        let recordsMaps = call.pass == .edit && call.halves == 1
        return WindowAttentionHooks(crossFrame: CrossFrameKeyValues(config.crossFrame, for: call),
                                    crossAttention: recordsMaps ? CrossAttentionRecorder(mask, for: call) : nil)
    }

    func observeGuidance(_ call: UNetCall, unconditional: Tensor, conditional: Tensor) {
        difference.observe(unconditional: unconditional, conditional: conditional)
    }

    func editRegion(afterEditStep step: Int) -> [[Float]]? {
        if step >= firstMaskStep && (step < lastMaskStep || automaticMask == nil) {
            let automatic = difference.latentMask() ?? mask.latentMask(height: height, width: width)
            automaticMask = automatic
            region = zip(automatic, inputRegion).map { a, r in
                zip(LatentRegions.dilate(a, height: height, width: width, radius: dilation), r).map { min($0, $1) }
            }
        }
        return region
    }
}
