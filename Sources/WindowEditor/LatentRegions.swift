// Boxes and masks on the latent grid: foreground crops, latent blending, crop/paste of [F, C, h, w] tensors.
import TensorKernels

/// A rectangle of latent pixels.
public struct LatentBox: Sendable, Equatable {
    public var x: Int, y: Int, width: Int, height: Int
    public init(x: Int, y: Int, width: Int, height: Int) {
        (self.x, self.y, self.width, self.height) = (x, y, width, height)
    }
    public var area: Int { width * height }
}

enum LatentRegions {
    /// Bounding box of the nonzero cells of `mask` (h×w), nil when empty.
    static func boundingBox(_ mask: [Float], height h: Int, width w: Int) -> LatentBox? {
        var (x0, y0, x1, y1) = (w, h, -1, -1)
        for y in 0..<h { for x in 0..<w where mask[y * w + x] > 0 {
            x0 = min(x0, x); x1 = max(x1, x); y0 = min(y0, y); y1 = max(y1, y)
        } }
        return x1 < 0 ? nil : LatentBox(x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1)
    }

    /// One box per frame, all of the same size (so the window stays one batch): each frame's mask box grown by
    /// `margin`, the largest width and height over the window (see `size`; each rounded up to a multiple of
    /// `sizeMultiple`), centred on each frame's box and kept inside the latent. Frames with an empty mask get a
    /// centred box.
    static func commonBoxes(_ masks: [[Float]], height h: Int, width w: Int, margin: Int,
                            sizeMultiple: Int = 1) -> [LatentBox] {
        let boxes = masks.map { boundingBox($0, height: h, width: w) }
        func clamp(_ v: Int, _ limit: Int) -> Int { min(limit, max(1, v)) }
        func roundUp(_ v: Int) -> Int { (v + sizeMultiple - 1) / sizeMultiple * sizeMultiple }
        // The margin is best effort: when box + margin would cover the whole latent but the box alone does not, the
        // crop is the box (the edit region's dilation is its context), so small latents still get a crop.
        func size(_ box: Int, _ limit: Int) -> Int {
            let wanted = clamp(roundUp(box + 2 * margin), limit)
            return wanted >= limit ? clamp(roundUp(box), limit) : wanted
        }
        let bw = size(boxes.compactMap { $0?.width }.max() ?? 0, w)
        let bh = size(boxes.compactMap { $0?.height }.max() ?? 0, h)
        return boxes.map { b in
            let cx = b.map { 2 * $0.x + $0.width } ?? w, cy = b.map { 2 * $0.y + $0.height } ?? h // doubled centres
            let x = min(max(0, (cx - bw) / 2), w - bw), y = min(max(0, (cy - bh) / 2), h - bh)
            return LatentBox(x: x, y: y, width: bw, height: bh)
        }
    }

    /// `box` grown by `margin` cells on every side as far as the latent allows, then moved back inside it (so the
    /// result always contains `box`).
    static func grow(_ box: LatentBox, by margin: Int, height h: Int, width w: Int) -> LatentBox {
        let (bw, bh) = (min(w, box.width + 2 * margin), min(h, box.height + 2 * margin))
        return LatentBox(x: min(max(0, box.x - margin), w - bw), y: min(max(0, box.y - margin), h - bh),
                         width: bw, height: bh)
    }

    /// x [F, C, h, w] → [F, C, bh, bw] cut at each frame's box.
    static func crop(_ x: Tensor, _ boxes: [LatentBox]) -> Tensor {
        let (f, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (bh, bw) = (boxes[0].height, boxes[0].width)
        let out = Tensor(shape: [f, c, bh, bw])
        for i in 0..<f { for ch in 0..<c { for y in 0..<bh {
            let source = x.data + ((i * c + ch) * h + boxes[i].y + y) * w + boxes[i].x
            (out.data + ((i * c + ch) * bh + y) * bw).update(from: source, count: bw)
        } } }
        return out
    }

    /// Writes the crops [F, C, bh, bw] back into x [F, C, h, w].
    static func paste(_ crops: Tensor, into x: Tensor, _ boxes: [LatentBox]) {
        let (f, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (bh, bw) = (crops.shape[2], crops.shape[3])
        for i in 0..<f { for ch in 0..<c { for y in 0..<bh {
            let destination = x.data + ((i * c + ch) * h + boxes[i].y + y) * w + boxes[i].x
            destination.update(from: crops.data + ((i * c + ch) * bh + y) * bw, count: bw)
        } } }
    }

    /// A per-frame h×w map cut at each frame's box.
    static func crop(_ maps: [[Float]], height h: Int, width w: Int, _ boxes: [LatentBox]) -> [[Float]] {
        zip(maps, boxes).map { m, b in
            var out = [Float](repeating: 0, count: b.area)
            for y in 0..<b.height { for x in 0..<b.width { out[y * b.width + x] = m[(b.y + y) * w + b.x + x] } }
            return out
        }
    }

    /// x ← m·x + (1 − m)·reference, m per frame over h×w, broadcast over channels.
    static func blend(_ x: Tensor, reference: Tensor, masks: [[Float]]) {
        let (f, c, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        for i in 0..<f { for ch in 0..<c {
            let p = x.data + (i * c + ch) * hw, r = reference.data + (i * c + ch) * hw
            let m = masks[i]
            for k in 0..<hw where m[k] < 1 { p[k] = r[k] + m[k] * (p[k] - r[k]) }
        } }
    }

    /// Binary dilation of an h×w mask by `radius` cells (square structuring element).
    static func dilate(_ mask: [Float], height h: Int, width w: Int, radius: Int) -> [Float] {
        guard radius > 0 else { return mask }
        var rows = [Float](repeating: 0, count: h * w), out = rows
        for y in 0..<h { for x in 0..<w {
            var v: Float = 0
            for xx in max(0, x - radius)...min(w - 1, x + radius) where mask[y * w + xx] > 0 { v = 1; break }
            rows[y * w + x] = v
        } }
        for y in 0..<h { for x in 0..<w {
            var v: Float = 0
            for yy in max(0, y - radius)...min(h - 1, y + radius) where rows[yy * w + x] > 0 { v = 1; break }
            out[y * w + x] = v
        } }
        return out
    }
}
