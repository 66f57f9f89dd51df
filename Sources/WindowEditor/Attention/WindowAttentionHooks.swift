// The attention hooks of one UNet call on a window: the pieces a method chose for the call, applied in one order.
import StableDiffusion
import TensorKernels

/// In each self-attention layer, in this order:
/// 1. `propagation` (tokenflow's edit calls): when it has the layer's correspondences, the layer computes the
///    keyframes only and gathers every other frame's output from theirs; nothing below runs for the layer.
/// 2. `featureRecorder` (tokenflow's inversion calls) keeps the layer's input, before any merging, as source features.
/// 3. Keys/values: `merging` (ocd) merges volumes of frames where the layer is large enough; elsewhere `crossFrame`
///    picks whole frames; when neither applies the layer runs plain self-attention.
/// 4. `mapReuse` (attention-reuse, any method): inversion calls keep the layer's input; edit calls at reused steps
///    take their queries and keys from it, at layers that are not merged.
/// In each cross-attention layer: `crossAttention` (blended's edit calls) observes the probabilities.
/// Every piece is built for this call; what they record goes into method-owned state, never into the model.
final class WindowAttentionHooks: UNetAttentionHooks {
    let crossFrame: CrossFrameKeyValues
    let merging: SaliencyMergedKeyValues?
    let featureRecorder: TokenFlowRecorder?
    let propagation: TokenFlowPropagator?
    let crossAttention: CrossAttentionRecorder?
    /// Self-attention map reuse, which the edit loop adds to every method's hooks (nil: off).
    var mapReuse: SelfAttentionMapReuse? = nil
    /// Attention score pairs (queries × keys, summed over items and layers): the cost merging and frame choice cut.
    private(set) var attentionPairs = 0
    /// Key/value tokens removed by merging, summed over layers.
    var mergedTokens: Int { merging?.mergedTokens ?? 0 }

    init(crossFrame: CrossFrameKeyValues, merging: SaliencyMergedKeyValues? = nil,
         featureRecorder: TokenFlowRecorder? = nil, propagation: TokenFlowPropagator? = nil,
         crossAttention: CrossAttentionRecorder? = nil) {
        self.crossFrame = crossFrame
        self.merging = merging
        self.featureRecorder = featureRecorder
        self.propagation = propagation
        self.crossAttention = crossAttention
    }

    func selfAttentionPropagation(_ x: Tensor, layer: AttentionLayerInfo) -> PropagatedSelfAttention? {
        guard let p = propagation?.propagation(x, layer: layer) else { return nil }
        let n = layer.height * layer.width
        attentionPairs += p.computed.count * n * (p.groups.itemGroups.first?.count ?? 0) * n
        return p
    }

    func selfAttentionKeyValues(_ x: Tensor, layer: AttentionLayerInfo) -> KeyValueGroups? {
        let (frames, halves) = (crossFrame.frames, crossFrame.halves)
        let n = layer.height * layer.width
        precondition(x.shape == [halves * frames, n, layer.channels],
                     "window attention: \(x.shape) for \(halves)×\(frames) frames")
        featureRecorder?.record(x, layer: layer)
        mapReuse?.record(x, layer: layer)
        var groups = merging?.keyValues(x, layer: layer)
        if groups == nil, let mapReuse, mapReuse.applies(to: layer) {
            groups = mapReuse.reusingMaps(crossFrame.keyValues(x) ?? crossFrame.ownFrames(x), x, layer: layer)
        }
        guard let groups = groups ?? crossFrame.keyValues(x) else {
            attentionPairs += halves * frames * n * n
            return nil
        }
        for g in groups.itemGroups { attentionPairs += n * g.reduce(0) { $0 + groups.tokens[$1].shape[1] } }
        return groups
    }

    func wantsCrossAttentionProbabilities(_ layer: AttentionLayerInfo) -> Bool {
        crossAttention?.accepts(layer) ?? false
    }

    func observeCrossAttention(_ probabilities: Tensor, layer: AttentionLayerInfo) {
        crossAttention?.observe(probabilities)
    }
}
