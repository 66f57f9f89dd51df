// mode=tokenflow's two hook pieces, around one TokenFlowPropagation per window: inversion calls record the source
// features, edit calls propagate the keyframes' self-attention.
import StableDiffusion
import TensorKernels

/// An inversion call: each self-attention layer's input is the source features of edit step `editStep` (the edit
/// step that runs at this call's timestep).
struct TokenFlowRecorder {
    let flow: TokenFlowPropagation
    let editStep: Int

    func record(_ x: Tensor, layer: AttentionLayerInfo) { flow.record(x, layer: layer.name, step: editStep) }
}

/// An edit call at `editStep`: keyframes' self-attention computed, every other frame's gathered from theirs.
struct TokenFlowPropagator {
    let flow: TokenFlowPropagation
    let editStep: Int
    /// Halves of the call's batch (classifier-free guidance: 2).
    let halves: Int

    /// Nil when the layer's correspondences were not recorded (the layer then runs as usual).
    func propagation(_ x: Tensor, layer: AttentionLayerInfo) -> PropagatedSelfAttention? {
        flow.propagation(x, layer: layer.name, step: editStep, halves: halves)
    }
}
