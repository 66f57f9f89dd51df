// mode=blended's automatic mask, DiffEdit's way (Couairon et al. 2022): where the noise predicted under the target
// prompt differs from the one under the unconditional prompt, the prompts disagree about the image; elsewhere the
// edit has nothing to change. With negative-from-source (the default) the unconditional prompt is the source prompt,
// so the difference is DiffEdit's ε(target) − ε(source). The guided edit calls compute both halves anyway: the mask
// costs no UNet call. Per latent cell, the channel-mean |difference| is summed over the calls seen; each frame's map
// is scaled to [0, 1] between its minimum and maximum and kept at or above the threshold.
import TensorKernels

final class GuidanceDifferenceMask {
    let frames: Int, height: Int, width: Int
    let threshold: Float
    /// Per frame, height × width: |ε_target − ε_unconditional| averaged over channels, summed over calls.
    private var sum: [Float]
    private(set) var observedCalls = 0

    init(frames: Int, height: Int, width: Int, threshold: Float) {
        (self.frames, self.height, self.width, self.threshold) = (frames, height, width, threshold)
        sum = [Float](repeating: 0, count: frames * height * width)
    }

    /// The two halves of a guided call, each [F, C, h, w] at the whole latent's size; calls on crops (another size)
    /// are not taken.
    func observe(unconditional u: Tensor, conditional c: Tensor) {
        guard u.shape == c.shape, u.shape[0] == frames, u.shape[2] == height, u.shape[3] == width else { return }
        let channels = u.shape[1], n = height * width
        for f in 0..<frames { for ch in 0..<channels {
            let base = (f * channels + ch) * n
            for i in 0..<n { sum[f * n + i] += abs(c.data[base + i] - u.data[base + i]) / Float(channels) }
        } }
        observedCalls += 1
    }

    /// The mask on the latent grid (per frame, 0 or 1): the map scaled to [0, 1] per frame, at or above the
    /// threshold. All ones for a flat map; nil before any call was seen.
    func latentMask() -> [[Float]]? {
        guard observedCalls > 0 else { return nil }
        let n = height * width
        return (0..<frames).map { f in
            let map = sum[(f * n)..<((f + 1) * n)]
            guard let lo = map.min(), let hi = map.max(), hi > lo else { return [Float](repeating: 1, count: n) }
            return map.map { ($0 - lo) / (hi - lo) >= threshold ? 1 : 0 }
        }
    }
}
