// mode=blended's hook piece: an edit call's cross-attention maps feed the window's automatic mask.
import StableDiffusion
import TensorKernels

struct CrossAttentionRecorder {
    let mask: AutomaticBlendMask
    /// The target prompt's frames are the batch's last half: the first of them.
    let firstItem: Int

    init(_ mask: AutomaticBlendMask, for call: UNetCall) {
        self.mask = mask
        firstItem = (call.halves - 1) * call.frames
    }

    func accepts(_ layer: AttentionLayerInfo) -> Bool { mask.accepts(layer) }

    /// `probabilities` [B, N, 77], head-averaged, of a layer `accepts` took.
    func observe(_ probabilities: Tensor) { mask.observe(probabilities, firstItem: firstItem) }
}
