extension Ops {
    /// 2-D convolution, NCHW, weight [O, C, kh, kw], symmetric padding.
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0) -> Tensor {
        conv2d(x, weight: weight, bias: bias, stride: stride, pad: (padding, padding, padding, padding))
    }

    /// 2-D convolution with explicit (top, left, bottom, right) zero padding, lowered to im2col + one GEMM per image
    /// (1×1 stride-1 convolutions are a plain GEMM).
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int,
                              pad: (top: Int, left: Int, bottom: Int, right: Int)) -> Tensor {
        return Profiler.measure(weight.shape[2] == 1 && weight.shape[3] == 1 ? "conv1x1" : "conv\(weight.shape[2])x\(weight.shape[3]) im2col") {
        precondition(x.rank == 4 && weight.rank == 4 && x.shape[1] == weight.shape[1],
                     "conv2d: input \(x.shape) against weight \(weight.shape)")
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        let oh = (h + pad.top + pad.bottom - kh) / stride + 1
        let ow = (w + pad.left + pad.right - kw) / stride + 1
        let out = Tensor(shape: [n, o, oh, ow])
        let plane = oh * ow
        let kdim = c * kh * kw
        let direct = kh == 1 && kw == 1 && stride == 1 && pad == (0, 0, 0, 0)
        let col = direct ? nil : Tensor(shape: [kdim, plane])
        for b in 0..<n {
            let dst = out.data + b * o * plane
            if let bias {
                for oc in 0..<o { (dst + oc * plane).update(repeating: bias.data[oc], count: plane) }
            }
            let src = x.data + b * c * h * w
            var input = UnsafePointer(src)
            if let col {
                Profiler.measure("  (im2col part)") { im2col(src, col.data, c: c, h: h, w: w, kh: kh, kw: kw, stride: stride, top: pad.top, left: pad.left, oh: oh, ow: ow) }
                input = UnsafePointer(col.data)
            }
            gemm(weight.data, input, dst, m: o, n: plane, k: kdim, beta: bias == nil ? 0 : 1)
        }
        return out
        }
    }

    static func im2col(_ src: UnsafeMutablePointer<Float>, _ col: UnsafeMutablePointer<Float>, c: Int, h: Int, w: Int,
                       kh: Int, kw: Int, stride: Int, top: Int, left: Int, oh: Int, ow: Int) {
        let plane = oh * ow
        Parallel.forEach(c * kh * kw) { row in
            let ci = row / (kh * kw), ky = (row / kw) % kh, kx = row % kw
            let dst = col + row * plane
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
