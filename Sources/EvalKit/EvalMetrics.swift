// The evaluation metrics of `ocdedit eval`, on packed RGB frames and the clips' ground truth. Everything is pooled:
// a tally adds counts and sums over frames and clips, and ratios are taken once at the end.
import Foundation
import WindowEditor

/// Per-pixel and per-frame measures the tally is built from.
public enum EvalMetrics {
    /// Erosion radius (pixels, square neighbourhood) that skips the anti-aliased edge of an object.
    public static let interiorErosion = 2

    /// Pixels at or above `threshold`.
    public static func binary(_ mask: Mask, threshold: Int) -> [Bool] { mask.pixels.map { Int($0) >= threshold } }

    /// Erosion by a (2r+1)×(2r+1) square: a pixel stays when every pixel of its neighbourhood inside the frame is set
    /// (the frame border is no object edge, so it does not erode).
    public static func eroded(_ mask: [Bool], width w: Int, height h: Int, radius r: Int) -> [Bool] {
        guard r > 0 else { return mask }
        func pass(_ src: [Bool], along horizontal: Bool) -> [Bool] {
            var out = [Bool](repeating: false, count: w * h)
            let (lines, length) = horizontal ? (h, w) : (w, h)
            for line in 0..<lines {
                @inline(__always) func index(_ i: Int) -> Int { horizontal ? line * w + i : i * w + line }
                var prefix = [Int](repeating: 0, count: length + 1)   // unset pixels before i
                for i in 0..<length { prefix[i + 1] = prefix[i] + (src[index(i)] ? 0 : 1) }
                for i in 0..<length { out[index(i)] = prefix[min(length, i + r + 1)] == prefix[max(0, i - r)] }
            }
            return out
        }
        return pass(pass(mask, along: true), along: false)
    }

    /// The object's interior: the mask eroded by `interiorErosion`, or the plain mask when erosion empties it.
    public static func interior(_ mask: Mask, threshold: Int) -> [Bool] {
        let plain = binary(mask, threshold: threshold)
        let e = eroded(plain, width: mask.width, height: mask.height, radius: interiorErosion)
        return e.contains(true) ? e : plain
    }

    /// Mean RGB (0…255) of a packed RGB frame over `region`; nil when the region is empty.
    public static func meanColor(_ frame: Frame, _ region: [Bool]) -> [Double]? {
        precondition(frame.format == .rgb && region.count == frame.width * frame.height, "RGB frame and its region")
        var sum = [0.0, 0.0, 0.0], n = 0
        let p = frame.planes[0]
        for i in region.indices where region[i] {
            for c in 0..<3 { sum[c] += Double(p[3 * i + c]) }
            n += 1
        }
        return n == 0 ? nil : sum.map { $0 / Double(n) }
    }

    /// The palette name nearest `color` (Euclidean RGB); ties go to the first name in sorted order.
    public static func nearestColor(_ color: [Double], palette: [String: [Int]]) -> String? {
        var best: (String, Double)? = nil
        for name in palette.keys.sorted() {
            let p = palette[name]!
            let d = (0..<3).reduce(0.0) { $0 + pow(color[$1] - Double(p[$1]), 2) }
            if best == nil || d < best!.1 { best = (name, d) }
        }
        return best?.0
    }

    /// Background pixels (where the editor's feathered alpha of `mask` is exactly 0) and how many of them kept the
    /// input's 3 bytes.
    public static func backgroundCounts(input: Frame, output: Frame, mask: Mask, threshold: Int,
                                        feather: Int) -> (equal: Int, total: Int) {
        let alpha = FeatherMask(mask: mask, threshold: threshold, feather: feather).alpha
        let a = input.planes[0], b = output.planes[0]
        var equal = 0, total = 0
        for i in alpha.indices where alpha[i] == 0 {
            total += 1
            if a[3 * i] == b[3 * i] && a[3 * i + 1] == b[3 * i + 1] && a[3 * i + 2] == b[3 * i + 2] { equal += 1 }
        }
        return (equal, total)
    }

    /// Σ |current[p] − previous[p − d]| over the 3 channels of pixels p in `region` (frame f's object interior) with
    /// p − d inside the frame, and the number of pixel-channels summed.
    public static func warpSum(previous: Frame, current: Frame, region: [Bool], dx: Int, dy: Int)
        -> (sum: Double, count: Int) {
        let (w, h) = (current.width, current.height)
        let a = previous.planes[0], b = current.planes[0]
        var sum = 0, count = 0
        for y in 0..<h {
            let sy = y - dy
            guard sy >= 0 && sy < h else { continue }
            for x in 0..<w where region[y * w + x] {
                let sx = x - dx
                guard sx >= 0 && sx < w else { continue }
                let o = 3 * (y * w + x), s = 3 * (sy * w + sx)
                for c in 0..<3 { sum += abs(Int(b[o + c]) - Int(a[s + c])) }
                count += 3
            }
        }
        return (Double(sum), count)
    }

    /// |a ∩ b| and |a ∪ b| of two masks at `threshold`.
    public static func iouCounts(_ a: Mask, _ b: Mask, threshold: Int) -> (intersection: Int, union: Int) {
        precondition(a.pixels.count == b.pixels.count, "masks of one size")
        var i = 0, u = 0
        for k in a.pixels.indices {
            let x = Int(a.pixels[k]) >= threshold, y = Int(b.pixels[k]) >= threshold
            if x && y { i += 1 }
            if x || y { u += 1 }
        }
        return (i, u)
    }

    /// Σ (a − b)² over every byte of two frames of one size and format, and the byte count.
    public static func squaredError(_ a: Frame, _ b: Frame) -> (sum: Double, count: Int) {
        var sum = 0.0, count = 0
        for (pa, pb) in zip(a.planes, b.planes) {
            var s = 0
            for k in pa.indices { let d = Int(pa[k]) - Int(pb[k]); s += d * d }
            sum += Double(s)
            count += pa.count
        }
        return (sum, count)
    }
}

/// Counts and sums of every metric, pooled over frames and clips (`merge` adds two tallies).
///
/// - `edit_accuracy`: share of frames (those whose clip mask is not empty) whose edited object's mean output colour,
///   over the clip mask eroded by 2 px (the plain mask if erosion empties it), is nearest (Euclidean RGB) to the
///   expected colour among the clip's palette. Expected: `target_color`; `source_color` for a null edit.
/// - `background_exact`: share of pixels beyond the feathered clip mask (the editor's own feathered alpha of the
///   clip's ground-truth mask, at the run's mask-threshold and feather, exactly 0) whose output bytes equal the
///   input's in all 3 channels. The ground-truth mask in every mode, blended included.
/// - `warp_error`: mean absolute difference (0…255, over RGB channels and pixels) between consecutive output frames
///   after the ground-truth motion: over pixels p of frame f's eroded clip mask with p − d inside the frame,
///   |out_f[p] − out_{f−1}[p − d]|, d = displacements[f]; only pairs whose frames are in the same window.
///   nil without such a pair.
/// - `boundary_warp_error`: the same over pairs that straddle two windows (f−1 in one, f in the next); nil when none.
/// - `mask_iou` (mode=blended): Σ|composite ∩ clip| / Σ|composite ∪ clip| over frames, composite = the mask the
///   editor composited through (automatic mask ∩ the full frame it was given); nil in other modes.
/// - `psnr`: 10·log10(255² / MSE) dB of output against input over every byte of every frame; nil when the output
///   equals the input exactly (infinite PSNR) or there is nothing to compare.
/// Layout clips (mode=reatco's: label masks, ClipMetadata.isLayout) are scored by background_exact and psnr over
/// the union of the regions as the mask, and instead of edit accuracy and warp error (nil there) by:
/// - `region_accuracy`: share of frames in which every region with pixels has a majority of output pixels whose
///   nearest colour (Euclidean RGB, among region_palette) is its word's colour;
/// - `outside_psnr`: PSNR of output against input over the pixels outside every region (label 0).
public struct EvalTally: Sendable {
    public var frames = 0
    public var scoredFrames = 0, accurateFrames = 0
    public var backgroundPixels = 0, backgroundEqual = 0
    public var warpSum = 0.0, warpCount = 0
    public var boundaryWarpSum = 0.0, boundaryWarpCount = 0
    public var iouIntersection = 0, iouUnion = 0, iouFrames = 0
    public var squaredErrorSum = 0.0, squaredErrorCount = 0
    public var regionFrames = 0, regionAccurateFrames = 0
    public var outsideSquaredErrorSum = 0.0, outsideSquaredErrorCount = 0
    /// Wall-clock seconds of the edits (not the model load).
    public var seconds = 0.0
    /// False for runs that only measure fidelity (the VAE round trip): accuracy, background and warp are nil.
    public var measuresEdit = true

    public init() {}

    /// Adds one clip: `outputs` per input frame, edited in windows of `windowSize` frames; `compositeMasks` (one per
    /// frame) for mode=blended's mask IoU; `expectedColor` names the palette colour the edit should give the object.
    public mutating func add(_ clip: EvalClip, outputs: [Frame], windowSize: Int, expectedColor: String,
                             threshold: Int, feather: Int, compositeMasks: [Mask]? = nil) {
        precondition(outputs.count == clip.frames.count, "one output frame per input frame")
        frames += outputs.count
        for (input, output) in zip(clip.frames, outputs) {
            let e = EvalMetrics.squaredError(input, output)
            squaredErrorSum += e.sum
            squaredErrorCount += e.count
        }
        guard measuresEdit else { return }
        if clip.meta.isLayout {
            addLayout(clip, outputs: outputs, threshold: threshold, feather: feather)
            return
        }
        var interiors: [[Bool]] = []
        for f in outputs.indices {
            let interior = EvalMetrics.interior(clip.masks[f], threshold: threshold)
            interiors.append(interior)
            if let mean = EvalMetrics.meanColor(outputs[f], interior) {
                scoredFrames += 1
                if EvalMetrics.nearestColor(mean, palette: clip.meta.palette) == expectedColor { accurateFrames += 1 }
            }
            let b = EvalMetrics.backgroundCounts(input: clip.frames[f], output: outputs[f], mask: clip.masks[f],
                                                 threshold: threshold, feather: feather)
            backgroundEqual += b.equal
            backgroundPixels += b.total
            if let composite = compositeMasks?[f] {
                let c = EvalMetrics.iouCounts(composite, clip.masks[f], threshold: threshold)
                iouIntersection += c.intersection
                iouUnion += c.union
                iouFrames += 1
            }
        }
        for f in outputs.indices.dropFirst() {
            let d = clip.meta.displacement(f)
            let w = EvalMetrics.warpSum(previous: outputs[f - 1], current: outputs[f], region: interiors[f],
                                        dx: d.dx, dy: d.dy)
            if (f - 1) / windowSize == f / windowSize {
                warpSum += w.sum
                warpCount += w.count
            } else {
                boundaryWarpSum += w.sum
                boundaryWarpCount += w.count
            }
        }
    }

    /// A layout clip's share: background_exact over the regions' union, region_accuracy and outside_psnr.
    private mutating func addLayout(_ clip: EvalClip, outputs: [Frame], threshold: Int, feather: Int) {
        let meta = clip.meta
        let colors = meta.regionColors ?? [], palette = meta.regionPalette ?? [:]
        for f in outputs.indices {
            let labels = clip.masks[f].pixels
            let union = RegionWords.union(clip.masks[f], words: colors.count)
            let b = EvalMetrics.backgroundCounts(input: clip.frames[f], output: outputs[f], mask: union,
                                                 threshold: threshold, feather: feather)
            backgroundEqual += b.equal
            backgroundPixels += b.total
            var inRegion = [Int](repeating: 0, count: colors.count), right = inRegion
            let (a, o) = (clip.frames[f].planes[0], outputs[f].planes[0])
            for i in labels.indices {
                let v = Int(labels[i])
                if v == 0 {
                    for c in 0..<3 {
                        let d = Double(Int(a[3 * i + c]) - Int(o[3 * i + c]))
                        outsideSquaredErrorSum += d * d
                    }
                    outsideSquaredErrorCount += 3
                } else if v <= colors.count {
                    inRegion[v - 1] += 1
                    let rgb = (0..<3).map { Double(o[3 * i + $0]) }
                    if EvalMetrics.nearestColor(rgb, palette: palette) == colors[v - 1] { right[v - 1] += 1 }
                }
            }
            guard inRegion.contains(where: { $0 > 0 }) else { continue }
            regionFrames += 1
            if zip(inRegion, right).allSatisfy({ $0 == 0 || 2 * $1 > $0 }) { regionAccurateFrames += 1 }
        }
    }

    public mutating func merge(_ o: EvalTally) {
        frames += o.frames
        scoredFrames += o.scoredFrames; accurateFrames += o.accurateFrames
        backgroundPixels += o.backgroundPixels; backgroundEqual += o.backgroundEqual
        warpSum += o.warpSum; warpCount += o.warpCount
        boundaryWarpSum += o.boundaryWarpSum; boundaryWarpCount += o.boundaryWarpCount
        iouIntersection += o.iouIntersection; iouUnion += o.iouUnion; iouFrames += o.iouFrames
        squaredErrorSum += o.squaredErrorSum; squaredErrorCount += o.squaredErrorCount
        regionFrames += o.regionFrames; regionAccurateFrames += o.regionAccurateFrames
        outsideSquaredErrorSum += o.outsideSquaredErrorSum; outsideSquaredErrorCount += o.outsideSquaredErrorCount
        seconds += o.seconds
        measuresEdit = measuresEdit && o.measuresEdit
    }

    private static func ratio(_ a: Double, _ b: Int) -> Double? { b > 0 ? a / Double(b) : nil }

    public var editAccuracy: Double? { measuresEdit ? Self.ratio(Double(accurateFrames), scoredFrames) : nil }
    public var backgroundExact: Double? { measuresEdit ? Self.ratio(Double(backgroundEqual), backgroundPixels) : nil }
    public var warpError: Double? { measuresEdit ? Self.ratio(warpSum, warpCount) : nil }
    public var boundaryWarpError: Double? { measuresEdit ? Self.ratio(boundaryWarpSum, boundaryWarpCount) : nil }
    /// nil unless composite masks were added; an empty union (nothing in either mask) counts as a perfect 1.
    public var maskIoU: Double? {
        guard measuresEdit, iouFrames > 0 else { return nil }
        return iouUnion == 0 ? 1 : Double(iouIntersection) / Double(iouUnion)
    }
    public var psnr: Double? { Self.psnr(squaredErrorSum, squaredErrorCount) }
    /// nil without layout clips.
    public var regionAccuracy: Double? { measuresEdit ? Self.ratio(Double(regionAccurateFrames), regionFrames) : nil }
    public var outsidePSNR: Double? { measuresEdit ? Self.psnr(outsideSquaredErrorSum, outsideSquaredErrorCount) : nil }

    private static func psnr(_ sum: Double, _ count: Int) -> Double? {
        guard count > 0, sum > 0 else { return nil }
        return 10 * log10(255 * 255 / (sum / Double(count)))
    }
}
