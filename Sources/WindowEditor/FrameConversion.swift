// Frames ↔ RGB planes in [0, 1]: packed formats read directly, I420 through BT.601 limited range; bilinear resize.
import TensorKernels

/// An RGB image as three planes of floats in [0, 1].
struct RGBImage {
    var width: Int, height: Int
    /// [3][height·width]
    var planes: [[Float]]

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
        planes = [[Float]](repeating: [Float](repeating: 0, count: width * height), count: 3)
    }

    init(_ frame: Frame) {
        self.init(width: frame.width, height: frame.height)
        let n = width * height
        switch frame.format {
        case .rgb, .rgba, .bgrx:
            let bpp = frame.format == .rgb ? 3 : 4
            let offsets = frame.format == .bgrx ? [2, 1, 0] : [0, 1, 2]
            let p = frame.planes[0]
            for c in 0..<3 { for i in 0..<n { planes[c][i] = Float(p[i * bpp + offsets[c]]) / 255 } }
        case .i420:
            let cw = (width + 1) / 2
            for y in 0..<height { for x in 0..<width {
                let i = y * width + x, ci = (y / 2) * cw + x / 2
                let (r, g, b) = Self.rgb(y: frame.planes[0][i], u: frame.planes[1][ci], v: frame.planes[2][ci])
                planes[0][i] = r
                planes[1][i] = g
                planes[2][i] = b
            } }
        }
    }

    static func rgb(y: UInt8, u: UInt8, v: UInt8) -> (Float, Float, Float) {
        let l = 1.164383 * (Float(y) - 16), cb = Float(u) - 128, cr = Float(v) - 128
        func unit(_ v: Float) -> Float { min(max(v / 255, 0), 1) }
        return (unit(l + 1.596027 * cr), unit(l - 0.391762 * cb - 0.812968 * cr), unit(l + 2.017232 * cb))
    }

    /// BT.601 limited-range Y, U, V of an RGB triple in [0, 1].
    static func yuv(_ r: Float, _ g: Float, _ b: Float) -> (Float, Float, Float) {
        (16 + 65.481 * r + 128.553 * g + 24.966 * b,
         128 - 37.797 * r - 74.203 * g + 112 * b,
         128 + 112 * r - 93.786 * g - 18.214 * b)
    }

    /// Bilinear sample at pixel coordinates (pixel centres at integer + 0.5 are at integer here), edges clamped.
    @inline(__always) func sample(_ c: Int, _ fx: Float, _ fy: Float) -> Float {
        let x = min(max(fx, 0), Float(width - 1)), y = min(max(fy, 0), Float(height - 1))
        let x0 = Int(x), y0 = Int(y), x1 = min(x0 + 1, width - 1), y1 = min(y0 + 1, height - 1)
        let ax = x - Float(x0), ay = y - Float(y0)
        let p = planes[c]
        let top = p[y0 * width + x0] + ax * (p[y0 * width + x1] - p[y0 * width + x0])
        let bottom = p[y1 * width + x0] + ax * (p[y1 * width + x1] - p[y1 * width + x0])
        return top + ay * (bottom - top)
    }

    /// Bilinear resize (half-pixel centres). Downscaling by more than 2× first averages boxes to limit aliasing.
    func resized(width w: Int, height h: Int) -> RGBImage {
        if w == width && h == height { return self }
        var src = self
        while src.width >= 2 * w && src.height >= 2 * h { src = src.halved() }
        var out = RGBImage(width: w, height: h)
        let sx = Float(src.width) / Float(w), sy = Float(src.height) / Float(h)
        for c in 0..<3 { for y in 0..<h { for x in 0..<w {
            out.planes[c][y * w + x] = src.sample(c, (Float(x) + 0.5) * sx - 0.5, (Float(y) + 0.5) * sy - 0.5)
        } } }
        return out
    }

    private func halved() -> RGBImage {
        var out = RGBImage(width: width / 2, height: height / 2)
        for c in 0..<3 { for y in 0..<out.height { for x in 0..<out.width {
            let p = planes[c], i = 2 * y * width + 2 * x
            out.planes[c][y * out.width + x] = (p[i] + p[i + 1] + p[i + width] + p[i + width + 1]) / 4
        } } }
        return out
    }
}

enum ImageTensors {
    /// Images (same size) → [F, 3, h, w] in [−1, 1].
    static func tensor(_ images: [RGBImage]) -> Tensor {
        let (h, w) = (images[0].height, images[0].width)
        let t = Tensor(shape: [images.count, 3, h, w])
        for (i, im) in images.enumerated() { for c in 0..<3 {
            let d = t.data + (i * 3 + c) * h * w
            for k in 0..<(h * w) { d[k] = im.planes[c][k] * 2 - 1 }
        } }
        return t
    }

    /// [F, 3, h, w] in [−1, 1] → images in [0, 1] (clamped).
    static func images(_ t: Tensor) -> [RGBImage] {
        let (f, h, w) = (t.shape[0], t.shape[2], t.shape[3])
        return (0..<f).map { i in
            var im = RGBImage(width: w, height: h)
            for c in 0..<3 {
                let s = t.data + (i * 3 + c) * h * w
                for k in 0..<(h * w) { im.planes[c][k] = min(max(s[k] / 2 + 0.5, 0), 1) }
            }
            return im
        }
    }
}
