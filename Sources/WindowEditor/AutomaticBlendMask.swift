// mode=blended: blended latent diffusion with an automatic mask, found where the target prompt's edited words attend.
// Cross-attention probabilities of those words are summed over the layers at one resolution (FateZero's 16×16 maps
// at 512 px: the coarsest with at least 16 cells a side) and over the steps seen so far, then 3×3 max-pooled,
// normalised by each frame's maximum and thresholded (FateZero's LocalBlend, threshold 0.3).
import StableDiffusion
import TensorKernels

final class AutomaticBlendMask {
    /// Positions in the 77-token context (BOS = 0) whose attention marks the edited area; empty = the whole frame.
    let tokens: [Int]
    let frames: Int
    /// Resolution of the cross-attention layers that are read.
    let mapHeight: Int, mapWidth: Int
    let threshold: Float
    /// Per frame, mapHeight × mapWidth: attention summed over tokens, layers and steps.
    private var sum: [Float]
    private(set) var observedLayers = 0

    init(tokens: [Int], frames: Int, latentHeight h: Int, latentWidth w: Int, unet: UNet2DConditionConfig,
         threshold: Float = 0.3) {
        self.tokens = tokens
        self.frames = frames
        self.threshold = threshold
        let level = Self.mapLevel(unet, latentHeight: h)
        mapHeight = Self.size(h, halvings: level)
        mapWidth = Self.size(w, halvings: level)
        sum = [Float](repeating: 0, count: frames * mapHeight * mapWidth)
    }

    /// Feature-map size after `halvings` stride-2 convolutions (padding 1: odd sizes round up).
    static func size(_ n: Int, halvings: Int) -> Int {
        var n = n
        for _ in 0..<halvings { n = (n + 1) / 2 }
        return n
    }

    /// The coarsest down-block level with cross-attention whose maps keep at least `minimumCells` a side (FateZero's
    /// 16×16 at 512 px, where SD 1.x also has 64×64 and 32×32 maps); a latent too small for that uses its finest
    /// level. Coarser maps are more semantic, but a map much coarser than the object cannot outline it: at 16×16
    /// latents a quarter-size rule gave 4×4 maps, cells of 32 px for objects of 24–52 px.
    static func mapLevel(_ config: UNet2DConditionConfig, latentHeight h: Int, minimumCells: Int = 16) -> Int {
        let levels = config.downBlockTypes.indices.filter { config.downBlockTypes[$0] == "CrossAttnDownBlock2D" }
        return levels.last { size(h, halvings: $0) >= minimumCells } ?? levels.first ?? 0
    }

    /// Context positions of the target prompt's tokens that the source prompt does not have (as a multiset, in order),
    /// or every target token when the prompts use the same words. Positions past the 75 that fit are dropped.
    static func editedTokenPositions(source: [Int32], target: [Int32]) -> [Int] {
        var remaining: [Int32: Int] = [:]
        for t in source { remaining[t, default: 0] += 1 }
        var edited: [Int] = []
        for (i, t) in target.prefix(75).enumerated() {
            if let n = remaining[t], n > 0 { remaining[t] = n - 1 } else { edited.append(i + 1) }
        }
        return edited.isEmpty ? Array(1..<(min(target.count, 75) + 1)) : edited
    }

    func accepts(_ layer: AttentionLayerInfo) -> Bool {
        !tokens.isEmpty && layer.isCrossAttention && layer.height == mapHeight && layer.width == mapWidth
    }

    /// `probabilities` [B, N, 77] (head-averaged) of one layer; items `firstItem ..< firstItem + frames` are the
    /// target prompt's (the conditional half under classifier-free guidance).
    func observe(_ probabilities: Tensor, firstItem: Int) {
        let (n, m) = (probabilities.shape[1], probabilities.shape[2])
        precondition(n == mapHeight * mapWidth && probabilities.shape[0] >= firstItem + frames,
                     "blend mask: maps \(probabilities.shape) for \(frames) frames of \(mapHeight)×\(mapWidth)")
        for f in 0..<frames {
            let p = probabilities.data + (firstItem + f) * n * m
            for i in 0..<n {
                var s: Float = 0
                for t in tokens where t < m { s += p[i * m + t] }
                sum[f * n + i] += s
            }
        }
        observedLayers += 1
    }

    /// The mask on the latent grid (h×w per frame, 0 or 1): the accumulated map max-pooled over 3×3, divided by the
    /// frame's maximum, at or above the threshold, resized (nearest) to the latent. All ones before anything was seen.
    func latentMask(height h: Int, width w: Int) -> [[Float]] {
        let (mh, mw) = (mapHeight, mapWidth)
        return (0..<frames).map { f in
            guard observedLayers > 0 else { return [Float](repeating: 1, count: h * w) }
            let map = Array(sum[(f * mh * mw)..<((f + 1) * mh * mw)])
            var pooled = [Float](repeating: 0, count: mh * mw)
            for y in 0..<mh { for x in 0..<mw {
                var v = -Float.infinity
                for yy in max(0, y - 1)...min(mh - 1, y + 1) { for xx in max(0, x - 1)...min(mw - 1, x + 1) {
                    v = max(v, map[yy * mw + xx])
                } }
                pooled[y * mw + x] = v
            } }
            let peak = pooled.max() ?? 0
            guard peak > 0 else { return [Float](repeating: 0, count: h * w) }
            var out = [Float](repeating: 0, count: h * w)
            for y in 0..<h { for x in 0..<w {
                out[y * w + x] = pooled[(y * mh / h) * mw + x * mw / w] / peak >= threshold ? 1 : 0
            } }
            return out
        }
    }
}
