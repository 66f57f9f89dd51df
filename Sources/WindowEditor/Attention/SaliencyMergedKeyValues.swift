// Object-centric token merging of self-attention keys/values for one UNet call: each volume of `tome-frames` frames
// is merged with SaliencyTokenMerging (foreground tokens protected by saliency), and each frame attends to the
// merged volumes that hold its cross-frame attended frames.
import StableDiffusion
import TensorKernels

final class SaliencyMergedKeyValues {
    /// The merging settings, for the editor's lifetime.
    struct Config {
        /// Share of a volume's tokens merged.
        var ratio: Double
        var foregroundWeight: Float
        /// Frames per merging volume.
        var volumeFrames: Int
        /// Seeds the random destinations (with the call's timestep and each layer's name).
        var seed: UInt64
        /// Layers with fewer tokens per frame are never merged (ToMe's low-resolution guard).
        var minimumTokens = 256

        init(_ settings: EditorSettings) {
            ratio = settings.tomeRatio
            foregroundWeight = Float(settings.tomeForegroundWeight)
            volumeFrames = max(1, settings.tomeFrames)
            seed = settings.seed
        }
    }

    let config: Config
    let crossFrame: CrossFrameKeyValues
    /// Per frame: saliency in [0, 1] at the call's latent size (`height` × `width`, row-major).
    let saliency: [[Float]]
    let height: Int, width: Int
    /// The timestep seeds the destinations, so inversion and denoising at one timestep pair tokens alike.
    let seed: UInt64
    private(set) var mergedTokens = 0
    private var saliencyCache: [Int: [[Float]]] = [:]

    init(_ config: Config, crossFrame: CrossFrameKeyValues, call: UNetCall) {
        self.config = config
        self.crossFrame = crossFrame
        saliency = call.saliency
        height = call.height
        width = call.width
        seed = config.seed &+ UInt64(call.timestep) &* 0x2545_F491_4F6C_DD1D
    }

    /// The merged volumes as key/value groups and, per item, the volumes holding its attended frames; nil for layers
    /// below the minimum token count.
    func keyValues(_ x: Tensor, layer: AttentionLayerInfo) -> KeyValueGroups? {
        let n = layer.height * layer.width, c = layer.channels
        guard n >= config.minimumTokens else { return nil }
        let (frames, halves, volumeFrames) = (crossFrame.frames, crossFrame.halves, config.volumeFrames)
        let volumes = (frames + volumeFrames - 1) / volumeFrames
        let layerSaliency = saliency(height: layer.height, width: layer.width)
        let layerSeed = seed ^ fnv1a(layer.name)
        var tokens: [Tensor] = [], weights: [Tensor?] = [], itemGroups: [[Int]] = []
        for half in 0..<halves {
            for v in 0..<volumes {
                let first = v * volumeFrames, count = min(volumeFrames, frames - first)
                let start = x.data + (half * frames + first) * n * c
                let s = (first..<(first + count)).flatMap { layerSaliency[$0] }
                let r = Int(Double(count * n) * config.ratio)
                let plan = SaliencyTokenMerging.plan(
                    metric: start, channels: c, frames: count, height: layer.height, width: layer.width, r: r,
                    destinations: .random(seed: layerSeed &+ UInt64(v) &* 0x9E37_79B9), saliency: s,
                    foregroundWeight: config.foregroundWeight)
                let merged = SaliencyTokenMerging.merge(start, channels: c, plan: plan)
                tokens.append(merged.tokens)
                weights.append(merged.logSizes)
                mergedTokens += plan.merged.count
            }
        }
        for half in 0..<halves {
            for i in 0..<frames {
                let attended = Set(crossFrame.attendedFrames(i).map { $0 / volumeFrames }).sorted()
                itemGroups.append(attended.map { half * volumes + $0 })
            }
        }
        return KeyValueGroups(tokens: tokens, logWeights: weights, itemGroups: itemGroups)
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
}

/// A stable string hash (Swift's `hashValue` changes from run to run; seeds must not).
func fnv1a(_ s: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}
