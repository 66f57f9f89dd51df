// Puts the decoded edit back into the input frame through a feathered mask. Pixels where the feathered mask is 0
// keep the input's bytes, bit for bit.

/// A feathered alpha at frame size: the binary mask box-blurred with radius `feather / 2` (0 = hard edge).
/// Nonzero only within feather/2 pixels of a masked pixel. Public so evaluations can tell exactly which pixels the
/// editor leaves untouched (alpha 0) for a mask and settings.
public struct FeatherMask: Sendable {
    public let width: Int, height: Int
    /// Row-major, width × height, in [0, 1].
    public let alpha: [Float]

    public init(mask: Mask, threshold: Int, feather: Int) {
        width = mask.width
        height = mask.height
        let binary = mask.pixels.map { Int($0) >= threshold ? 1 : 0 }
        let r = max(0, feather / 2)
        guard r > 0 else { alpha = binary.map(Float.init); return }
        let (w, h) = (width, height)
        // Separable box sums with integer counts, so "no masked pixel in reach" is exactly 0.
        var rows = [Int](repeating: 0, count: w * h)
        for y in 0..<h {
            var prefix = [Int](repeating: 0, count: w + 1)
            for x in 0..<w { prefix[x + 1] = prefix[x] + binary[y * w + x] }
            for x in 0..<w { rows[y * w + x] = prefix[min(w, x + r + 1)] - prefix[max(0, x - r)] }
        }
        var a = [Float](repeating: 0, count: w * h)
        let area = Float((2 * r + 1) * (2 * r + 1))
        for x in 0..<w {
            var prefix = [Int](repeating: 0, count: h + 1)
            for y in 0..<h { prefix[y + 1] = prefix[y] + rows[y * w + x] }
            for y in 0..<h { a[y * w + x] = Float(prefix[min(h, y + r + 1)] - prefix[max(0, y - r)]) / area }
        }
        alpha = a
    }

    /// Every pixel fully edited (preserve-background=false).
    public init(fullWidth w: Int, height h: Int) {
        width = w
        height = h
        alpha = [Float](repeating: 1, count: w * h)
    }
}

enum Compositor {
    /// `edited` covers the processing canvas (`canvasWidth`×`canvasHeight`, the size the frame was scaled to)
    /// from (`originX`, `originY`) on. Returns `frame` with edited pixels blended in where `alpha` > 0.
    static func composite(_ frame: Frame, edited: RGBImage, originX: Int, originY: Int,
                          canvasWidth: Int, canvasHeight: Int, alpha: FeatherMask) -> Frame {
        var out = frame
        let (w, h) = (frame.width, frame.height)
        let sx = Float(canvasWidth) / Float(w), sy = Float(canvasHeight) / Float(h)
        @inline(__always) func editedRGB(_ x: Int, _ y: Int) -> (Float, Float, Float) {
            let px = (Float(x) + 0.5) * sx - 0.5 - Float(originX), py = (Float(y) + 0.5) * sy - 0.5 - Float(originY)
            return (edited.sample(0, px, py), edited.sample(1, px, py), edited.sample(2, px, py))
        }
        @inline(__always) func mix(_ old: UInt8, _ new: Float, _ a: Float) -> UInt8 {
            UInt8(min(max((Float(old) + a * (new - Float(old))).rounded(), 0), 255))
        }
        switch frame.format {
        case .rgb, .rgba, .bgrx:
            let bpp = frame.format == .rgb ? 3 : 4
            let (ri, gi, bi) = frame.format == .bgrx ? (2, 1, 0) : (0, 1, 2)
            out.planes[0].withUnsafeMutableBufferPointer { p in
                for y in 0..<h { for x in 0..<w {
                    let a = alpha.alpha[y * w + x]
                    guard a > 0 else { continue }
                    let (r, g, b) = editedRGB(x, y), o = (y * w + x) * bpp
                    p[o + ri] = mix(p[o + ri], r * 255, a)
                    p[o + gi] = mix(p[o + gi], g * 255, a)
                    p[o + bi] = mix(p[o + bi], b * 255, a)
                } }
            }
        case .i420:
            let cw = (w + 1) / 2, ch = (h + 1) / 2
            for cy in 0..<ch { for cx in 0..<cw {
                var aSum: Float = 0, uSum: Float = 0, vSum: Float = 0, count: Float = 0, editedCount: Float = 0
                for y in (2 * cy)..<min(h, 2 * cy + 2) { for x in (2 * cx)..<min(w, 2 * cx + 2) {
                    count += 1
                    let a = alpha.alpha[y * w + x]
                    guard a > 0 else { continue }
                    let (r, g, b) = editedRGB(x, y)
                    let (yy, u, v) = RGBImage.yuv(r, g, b)
                    out.planes[0][y * w + x] = mix(out.planes[0][y * w + x], yy, a)
                    aSum += a; uSum += u; vSum += v; editedCount += 1
                } }
                guard aSum > 0 else { continue }
                // Chroma of the block's edited pixels, weighted by the block's mean alpha.
                let i = cy * cw + cx
                out.planes[1][i] = mix(out.planes[1][i], uSum / editedCount, aSum / count)
                out.planes[2][i] = mix(out.planes[2][i], vSum / editedCount, aSum / count)
            } }
        }
        return out
    }
}
