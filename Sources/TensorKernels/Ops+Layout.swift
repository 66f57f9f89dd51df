extension Ops {
    /// [B, C, H, W] → [B, H·W, C].
    public static func toTokens(_ x: Tensor) -> Tensor {
        return Profiler.measure("layout") {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let n = h * w
        let out = Tensor(shape: [b, n, c])
        Parallel.forEach(b * c) { bc in
            let bi = bc / c, ci = bc % c
            let s = x.data + bc * n, d = out.data + bi * n * c + ci
            for i in 0..<n { d[i * c] = s[i] }
        }
        return out
        }
    }

    /// [B, H·W, C] → [B, C, H, W].
    public static func fromTokens(_ x: Tensor, height: Int, width: Int) -> Tensor {
        return Profiler.measure("layout") {
        let (b, n, c) = (x.shape[0], x.shape[1], x.shape[2])
        precondition(n == height * width, "fromTokens: \(x.shape) is not \(height)×\(width) tokens")
        let out = Tensor(shape: [b, c, height, width])
        Parallel.forEach(b * c) { bc in
            let bi = bc / c, ci = bc % c
            let s = x.data + bi * n * c + ci, d = out.data + bc * n
            for i in 0..<n { d[i] = s[i * c] }
        }
        return out
        }
    }

    /// Nearest-neighbour 2× upsampling of [B, C, H, W].
    public static func upsampleNearest2x(_ x: Tensor) -> Tensor {
        upsampleNearest(x, height: 2 * x.shape[2], width: 2 * x.shape[3])
    }

    /// For each of `output` cells, the input cell nearest-neighbour resizing copies: min(⌊i·input/output⌋, input − 1).
    static func nearestSources(input: Int, output: Int) -> [Int] {
        (0..<output).map { min(Int((Float($0) * (Float(input) / Float(output))).rounded(.down)), input - 1) }
    }

    /// Nearest-neighbour resize of [B, C, H, W] to `height` × `width`, PyTorch's
    /// `F.interpolate(size:, mode="nearest")`: output row i reads input row min(⌊i·H/height⌋, H − 1) (exactly i/2
    /// when height = 2H). diffusers' UNet upsamples this way to the skip connection's size when the latent is not a
    /// multiple of 2^(up blocks).
    public static func upsampleNearest(_ x: Tensor, height oh: Int, width ow: Int) -> Tensor {
        return Profiler.measure("layout") {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let cols = nearestSources(input: w, output: ow), rows = nearestSources(input: h, output: oh)
        let out = Tensor(uninitializedShape: [b, c, oh, ow])
        Parallel.forEach(b * c) { bc in
            let s = x.data + bc * h * w, d = out.data + bc * oh * ow
            for y in 0..<oh {
                let row = d + y * ow
                if y > 0 && rows[y] == rows[y - 1] { row.update(from: row - ow, count: ow); continue }
                let src = s + rows[y] * w
                if ow == 2 * w {
                    for xx in 0..<w { let v = src[xx]; row[2 * xx] = v; row[2 * xx + 1] = v }
                } else {
                    for xx in 0..<ow { row[xx] = src[cols[xx]] }
                }
            }
        }
        return out
        }
    }

    /// Concatenation along `dim`.
    public static func concat(_ ts: [Tensor], dim: Int) -> Tensor {
        return Profiler.measure("layout") {
        precondition(!ts.isEmpty, "concat of nothing")
        var shape = ts[0].shape
        shape[dim] = ts.reduce(0) { $0 + $1.shape[dim] }
        let out = Tensor(shape: shape)
        let outer = shape[..<dim].reduce(1, *)
        let inner = shape[(dim + 1)...].reduce(1, *)
        var offset = 0
        for t in ts {
            precondition(t.rank == shape.count && zip(t.shape, shape).enumerated().allSatisfy {
                             $0.offset == dim || $0.element.0 == $0.element.1
                         },
                         "concat: \(t.shape) does not fit \(shape) on dim \(dim)")
            let run = t.shape[dim] * inner
            for o in 0..<outer {
                (out.data + o * shape[dim] * inner + offset).update(from: t.data + o * run, count: run)
            }
            offset += run
        }
        return out
        }
    }

    /// Splits along `dim` into pieces of the given sizes.
    public static func split(_ x: Tensor, dim: Int, sizes: [Int]) -> [Tensor] {
        precondition(sizes.reduce(0, +) == x.shape[dim], "split \(x.shape) on \(dim) into \(sizes)")
        let outer = x.shape[..<dim].reduce(1, *)
        let inner = x.shape[(dim + 1)...].reduce(1, *)
        var offset = 0
        return sizes.map { size in
            var shape = x.shape
            shape[dim] = size
            let t = Tensor(shape: shape)
            let run = size * inner
            for o in 0..<outer {
                (t.data + o * run).update(from: x.data + o * x.shape[dim] * inner + offset, count: run)
            }
            offset += run
            return t
        }
    }
}
