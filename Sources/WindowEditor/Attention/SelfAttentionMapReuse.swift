// Self-attention map reuse (FateZero; prompt-to-prompt's self-attention injection): the inversion keeps each
// self-attention layer's input, and the first `attention-reuse` share of the edit steps attend with the source's
// maps (queries and keys projected from what the inversion kept at that step) over the edit's own values. The edited
// object keeps the source's layout (which cells belong together) while its appearance follows the target prompt;
// without it, guidance away from the source prompt can dissolve the object into the background.
import StableDiffusion
import TensorKernels

/// The maps one window's inversion leaves for its edit: per edit step, per layer, the layer's input [F, N, C].
final class SelfAttentionMaps {
    struct Config {
        /// Share of the edit steps (the first, noisiest ones) that reuse the inversion's maps; 0 = off.
        var share: Double
        /// Layers with more tokens than this keep nothing (FateZero's and prompt-to-prompt's 32² bound: the maps of
        /// the largest layers cost the most memory and carry the least layout).
        var maxTokens = 32 * 32

        init(_ settings: EditorSettings) { share = settings.attentionReuse }
    }

    let config: Config
    /// Edit steps 0..<reusedSteps reuse maps.
    let reusedSteps: Int
    private var kept: [Int: [String: Tensor]] = [:]

    init(_ config: Config, editSteps: Int) {
        self.config = config
        reusedSteps = min(editSteps, Int((Double(editSteps) * config.share).rounded()))
    }

    var isEnabled: Bool { reusedSteps > 0 }

    func keeps(_ layer: AttentionLayerInfo, editStep: Int) -> Bool {
        editStep < reusedSteps && layer.height * layer.width <= config.maxTokens
    }

    /// An inversion call's layer input at `editStep` (a later call at the same step, a fixed-point refinement,
    /// replaces it: it is closer to the latent the edit step sees).
    func record(_ x: Tensor, layer: AttentionLayerInfo, editStep: Int) {
        guard keeps(layer, editStep: editStep) else { return }
        kept[editStep, default: [:]][layer.name] = x.copy()
    }

    /// What the inversion kept for `layer` at `editStep`, when it has the shape of `frames` items like `x`'s.
    func source(layer: AttentionLayerInfo, editStep: Int, frames: Int, like x: Tensor) -> Tensor? {
        guard let s = kept[editStep]?[layer.name], s.shape == [frames, x.shape[1], x.shape[2]] else { return nil }
        return s
    }

    /// Frees the maps of the steps before `editStep` (each edit step reads its own once).
    func release(before editStep: Int) {
        for step in kept.keys where step < editStep { kept[step] = nil }
    }
}

/// The piece of one UNet call's hooks: inversion calls record, edit calls at reused steps take the maps.
struct SelfAttentionMapReuse {
    let maps: SelfAttentionMaps
    let call: UNetCall

    /// Inversion calls: keep the layer's input.
    func record(_ x: Tensor, layer: AttentionLayerInfo) {
        guard call.pass != .edit else { return }
        maps.record(x, layer: layer, editStep: call.editStep)
    }

    /// Whether an edit call at this layer takes the source's maps (it then needs key/value groups even without
    /// cross-frame attention).
    func applies(to layer: AttentionLayerInfo) -> Bool {
        call.pass == .edit && maps.keeps(layer, editStep: call.editStep)
    }

    /// `groups` (one group per batch item, item b's tokens, as CrossFrameKeyValues makes them) with the source's
    /// queries and keys for every half of the batch; unchanged when the inversion kept nothing fitting.
    func reusingMaps(_ groups: KeyValueGroups, _ x: Tensor, layer: AttentionLayerInfo) -> KeyValueGroups {
        let frames = call.frames
        guard applies(to: layer), groups.tokens.count == x.shape[0],
              groups.tokens.allSatisfy({ $0.shape == [1, x.shape[1], x.shape[2]] }),
              let source = maps.source(layer: layer, editStep: call.editStep, frames: frames, like: x)
        else { return groups }
        var out = groups
        let items = (0..<x.shape[0]).map { source.slice(first: $0 % frames, length: 1) }
        out.mapKeys = items
        out.mapQueries = call.halves == 1 ? source : Ops.concat(items, dim: 0)
        return out
    }
}
