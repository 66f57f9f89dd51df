// Cross-frame self-attention for one UNet call on a window, with object-centric token merging of keys/values.
import Foundation
import StableDiffusion
import TensorKernels

/// Hooks for one UNet call whose batch is `halves` × `frames` items, half-major (CFG: [uncond frames, cond frames]).
final class WindowAttention: UNetAttentionHooks {
    let frames: Int, halves: Int
    let crossFrame: CrossFrameAttention
    let mergeRatio: Double
    let foregroundWeight: Float
    let volumeFrames: Int
    /// Layers with fewer tokens per frame are never merged (ToMe's low-resolution guard).
    let minimumMergeTokens: Int
    /// Per frame: saliency in [0, 1] at the UNet input resolution (`height` × `width`, row-major).
    let saliency: [[Float]]
    let height: Int, width: Int
    let seed: UInt64
    /// Attention score pairs (queries × keys, summed over items and layers): the cost merging and frame choice cut.
    private(set) var attentionPairs = 0
    private(set) var mergedTokens = 0
    private var saliencyCache: [Int: [[Float]]] = [:]
    /// mode=blended: receives the target prompt's cross-attention maps.
    var blendMask: AutomaticBlendMask?
    /// mode=tokenflow: the edit step whose source features this (inversion) call records, or the edit step this
    /// (edit) call propagates.
    var tokenFlow: TokenFlowPropagation?
    var tokenFlowRecordStep: Int?, tokenFlowStep: Int?

    init(frames: Int, halves: Int, settings: EditorSettings, merge: Bool, saliency: [[Float]], height: Int, width: Int,
         seed: UInt64, minimumMergeTokens: Int = 256) {
        self.frames = frames
        self.halves = halves
        crossFrame = settings.crossFrame
        mergeRatio = merge ? settings.tomeRatio : 0
        foregroundWeight = Float(settings.tomeForegroundWeight)
        volumeFrames = max(1, settings.tomeFrames)
        self.minimumMergeTokens = minimumMergeTokens
        self.saliency = saliency
        self.height = height
        self.width = width
        self.seed = seed
    }

    /// Frames whose keys/values frame `i` attends to (always including itself).
    func attendedFrames(_ i: Int) -> [Int] {
        var list: [Int]
        switch crossFrame {
        case .none: list = [i]
        case .firstPrevious: list = [0, max(i - 1, 0), i]
        case .firstPreviousMiddle: list = [0, max(i - 1, 0), frames / 2, i]
        case .all: list = Array(0..<frames)
        }
        var seen = Set<Int>()
        return list.filter { seen.insert($0).inserted }
    }

    /// Saliency of every frame averaged down to a layer's resolution.
    private func saliency(height h: Int, width w: Int) -> [[Float]] {
        if let s = saliencyCache[h * 100_000 + w] { return s }
        // Cell y covers input rows ⌊y·H/h⌋ ..< ⌈(y+1)·H/h⌉ (odd sizes round up on the way down, so cells overlap).
        func span(_ i: Int, _ full: Int, _ layer: Int) -> Range<Int> {
            let lo = min(i * full / layer, full - 1)
            return lo..<max(lo + 1, min(full, ((i + 1) * full + layer - 1) / layer))
        }
        let out = saliency.map { full -> [Float] in
            var s = [Float](repeating: 0, count: h * w)
            for y in 0..<h { for x in 0..<w {
                var sum: Float = 0, n: Float = 0
                for yy in span(y, height, h) { for xx in span(x, width, w) {
                    sum += full[yy * width + xx]; n += 1
                } }
                s[y * w + x] = n > 0 ? sum / n : 0
            } }
            return s
        }
        saliencyCache[h * 100_000 + w] = out
        return out
    }

    func selfAttentionKeyValues(_ x: Tensor, layer: AttentionLayerInfo) -> KeyValueGroups? {
        let n = layer.height * layer.width, c = layer.channels
        precondition(x.shape == [halves * frames, n, c], "window attention: \(x.shape) for \(halves)×\(frames) frames")
        if let tokenFlow, let step = tokenFlowRecordStep, halves == 1 { tokenFlow.record(x, layer: layer.name, step: step) }
        let merge = mergeRatio > 0 && n >= minimumMergeTokens
        if crossFrame == .none && !merge {
            attentionPairs += halves * frames * n * n
            return nil
        }
        var tokens: [Tensor] = [], weights: [Tensor?] = [], itemGroups: [[Int]] = []
        if !merge {
            for b in 0..<(halves * frames) { tokens.append(x.slice(first: b, length: 1)); weights.append(nil) }
            for hf in 0..<halves {
                for i in 0..<frames { itemGroups.append(attendedFrames(i).map { hf * frames + $0 }) }
            }
        } else {
            let volumes = (frames + volumeFrames - 1) / volumeFrames
            let layerSaliency = saliency(height: layer.height, width: layer.width)
            let layerSeed = seed ^ fnv1a(layer.name)
            for hf in 0..<halves {
                for v in 0..<volumes {
                    let first = v * volumeFrames, count = min(volumeFrames, frames - first)
                    let start = x.data + (hf * frames + first) * n * c
                    let s = (first..<(first + count)).flatMap { layerSaliency[$0] }
                    let r = Int(Double(count * n) * mergeRatio)
                    let plan = SaliencyTokenMerging.plan(
                        metric: start, channels: c, frames: count, height: layer.height, width: layer.width, r: r,
                        destinations: .random(seed: layerSeed &+ UInt64(v) &* 0x9E37_79B9), saliency: s,
                        foregroundWeight: foregroundWeight)
                    let merged = SaliencyTokenMerging.merge(start, channels: c, plan: plan)
                    tokens.append(merged.tokens)
                    weights.append(merged.logSizes)
                    mergedTokens += plan.merged.count
                }
            }
            for hf in 0..<halves {
                for i in 0..<frames {
                    let vs = Set(attendedFrames(i).map { $0 / volumeFrames }).sorted()
                    itemGroups.append(vs.map { hf * volumes + $0 })
                }
            }
        }
        for g in itemGroups { attentionPairs += n * g.reduce(0) { $0 + tokens[$1].shape[1] } }
        return KeyValueGroups(tokens: tokens, logWeights: weights, itemGroups: itemGroups)
    }
}

extension WindowAttention {
    func selfAttentionPropagation(_ x: Tensor, layer: AttentionLayerInfo) -> PropagatedSelfAttention? {
        guard let tokenFlow, let step = tokenFlowStep,
              let p = tokenFlow.propagation(x, layer: layer.name, step: step, halves: halves) else { return nil }
        let n = layer.height * layer.width
        attentionPairs += p.computed.count * n * (p.groups.itemGroups.first?.count ?? 0) * n
        return p
    }

    func wantsCrossAttentionProbabilities(_ layer: AttentionLayerInfo) -> Bool { blendMask?.accepts(layer) ?? false }

    /// The batch is half-major: the target prompt's frames are the last half.
    func observeCrossAttention(_ probabilities: Tensor, layer: AttentionLayerInfo) {
        blendMask?.observe(probabilities, firstItem: (halves - 1) * frames)
    }
}

/// A stable string hash (Swift's `hashValue` changes from run to run; seeds must not).
func fnv1a(_ s: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}
