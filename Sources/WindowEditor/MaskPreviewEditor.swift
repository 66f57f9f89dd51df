/// `preview-mask=true`: tints the pixels whose mask value is at or above the threshold, leaves every other byte
/// as it was. Lets a user check mask alignment at full speed.
/// Packed RGB formats: each colour channel moves half-way toward magenta (255, 0, 255); alpha/padding bytes stay.
/// I420: luma of masked pixels is halved and lifted (Y/2 + 64); a chroma sample is tinted toward magenta
/// (U, V → (U+212)/2, (V+234)/2) when the top-left pixel of its 2×2 block is masked.
public final class MaskPreviewEditor: WindowEditing {
    public let threshold: UInt8

    public init(threshold: Int) { self.threshold = UInt8(clamping: threshold) }

    public func edit(frames: [Frame], masks: [Mask], isCancelled: @escaping @Sendable () -> Bool) throws -> [Frame] {
        precondition(frames.count == masks.count, "one mask per frame")
        return zip(frames, masks).map { tint($0, mask: $1.scaled(width: $0.width, height: $0.height)) }
    }

    func tint(_ frame: Frame, mask: Mask) -> Frame {
        var out = frame
        let t = threshold
        switch frame.format {
        case .rgb, .rgba, .bgrx:
            let bpp = frame.format == .rgb ? 3 : 4
            // Channel offsets of red and blue (magenta = red + blue) and green.
            let (r, g, b) = frame.format == .bgrx ? (2, 1, 0) : (0, 1, 2)
            out.planes[0].withUnsafeMutableBufferPointer { p in
                for i in 0..<(frame.width * frame.height) where mask.pixels[i] >= t {
                    let o = i * bpp
                    p[o + r] = UInt8((Int(p[o + r]) + 255) / 2)
                    p[o + g] = p[o + g] / 2
                    p[o + b] = UInt8((Int(p[o + b]) + 255) / 2)
                }
            }
        case .i420:
            let w = frame.width, h = frame.height, cw = (w + 1) / 2, ch = (h + 1) / 2
            for i in 0..<(w * h) where mask.pixels[i] >= t {
                out.planes[0][i] = out.planes[0][i] / 2 + 64
            }
            for cy in 0..<ch {
                for cx in 0..<cw where mask.pixels[(2 * cy) * w + 2 * cx] >= t {
                    let c = cy * cw + cx
                    out.planes[1][c] = UInt8((Int(out.planes[1][c]) + 212) / 2)
                    out.planes[2][c] = UInt8((Int(out.planes[2][c]) + 234) / 2)
                }
            }
        }
        return out
    }
}
