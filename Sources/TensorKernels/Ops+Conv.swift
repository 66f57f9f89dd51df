extension Ops {
    /// 2-D convolution, NCHW, weight [O, C, kh, kw], symmetric padding.
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0) -> Tensor {
        conv2d(x, weight: weight, bias: bias, stride: stride, pad: (padding, padding, padding, padding))
    }

    /// 2-D convolution with explicit (top, left, bottom, right) zero padding, lowered to im2col + one GEMM per image
    /// (1×1 stride-1 convolutions are a plain GEMM).
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int,
                              pad: (top: Int, left: Int, bottom: Int, right: Int)) -> Tensor {
        let name = weight.shape[2] == 1 && weight.shape[3] == 1
            ? "conv1x1" : "conv\(weight.shape[2])x\(weight.shape[3]) im2col"
        return Profiler.measure(name) {
        precondition(x.rank == 4 && weight.rank == 4 && x.shape[1] == weight.shape[1],
                     "conv2d: input \(x.shape) against weight \(weight.shape)")
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        let oh = (h + pad.top + pad.bottom - kh) / stride + 1
        let ow = (w + pad.left + pad.right - kw) / stride + 1
        let out = Tensor(uninitializedShape: [n, o, oh, ow])
        let plane = oh * ow
        let kdim = c * kh * kw
        let direct = kh == 1 && kw == 1 && stride == 1 && pad == (0, 0, 0, 0)
        // Images per GEMM: as many as keep the column buffer under im2colChunkFloats, so a deep layer's large
        // weight is streamed once per chunk rather than once per image (batched frames at 4×4 … 16×16 latents).
        let imagesPerChunk = direct ? 1 : max(1, min(n, im2colChunkFloats / max(kdim * plane, 1)))
        let col = direct ? nil : Tensor(uninitializedShape: [kdim, imagesPerChunk * plane])
        let staging = imagesPerChunk > 1 ? Tensor(uninitializedShape: [o, imagesPerChunk * plane]) : nil
        var first = 0
        while first < n {
            let images = min(imagesPerChunk, n - first)
            let cols = images * plane
            // GEMM target: the output itself for one image, else a [O, images·plane] staging buffer scattered below.
            let dst = staging?.data ?? out.data + first * o * plane
            if let bias {
                for oc in 0..<o { (dst + oc * cols).update(repeating: bias.data[oc], count: cols) }
            }
            var input = UnsafePointer(x.data + first * c * h * w)
            if let col {
                for i in 0..<images {
                    im2col(x.data + (first + i) * c * h * w, col.data + i * plane, c: c, h: h, w: w, kh: kh, kw: kw,
                           stride: stride, top: pad.top, left: pad.left, oh: oh, ow: ow, rowStride: cols)
                }
                input = UnsafePointer(col.data)
            }
            gemm(weight.data, input, dst, m: o, n: cols, k: kdim, beta: bias == nil ? 0 : 1)
            if let staging {
                Parallel.forEach(images * o) { t in
                    let i = t / o, oc = t % o
                    (out.data + ((first + i) * o + oc) * plane)
                        .update(from: staging.data + oc * cols + i * plane, count: plane)
                }
            }
            first += images
        }
        return out
        }
    }

    /// Floats in one im2col buffer (32 MB).
    static let im2colChunkFloats = 8 << 20

    /// Column matrix rows (ci, ky, kx), each `oh·ow` long, written `rowStride` apart (several images side by side).
    static func im2col(_ src: UnsafeMutablePointer<Float>, _ col: UnsafeMutablePointer<Float>, c: Int, h: Int, w: Int,
                       kh: Int, kw: Int, stride: Int, top: Int, left: Int, oh: Int, ow: Int, rowStride: Int) {
        Parallel.forEach(c * kh * kw) { row in
            let ci = row / (kh * kw), ky = (row / kw) % kh, kx = row % kw
            let dst = col + row * rowStride
            let s = src + ci * h * w
            for oy in 0..<oh {
                let iy = oy * stride + ky - top
                let d = dst + oy * ow
                if iy < 0 || iy >= h { d.update(repeating: 0, count: ow); continue }
                let srow = s + iy * w
                if stride == 1 {
                    // contiguous run: columns ox with 0 <= ox + kx - left < w
                    let lo = max(0, left - kx), hi = min(ow, w + left - kx)
                    if lo > 0 { d.update(repeating: 0, count: lo) }
                    if hi > lo { (d + lo).update(from: srow + lo + kx - left, count: hi - lo) }
                    if hi < ow { (d + max(hi, lo)).update(repeating: 0, count: ow - max(hi, lo)) }
                } else {
                    for ox in 0..<ow {
                        let ix = ox * stride + kx - left
                        d[ox] = ix >= 0 && ix < w ? srow[ix] : 0
                    }
                }
            }
        }
    }
}
