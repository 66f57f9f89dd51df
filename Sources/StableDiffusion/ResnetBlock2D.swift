import TensorKernels

/// GN → SiLU → conv1 (+ time_emb_proj(SiLU(temb))) → GN → SiLU → conv2, plus a 1×1 shortcut when channels change.
struct ResnetBlock2D {
    let norm1: GroupNorm, conv1: Conv2d, norm2: GroupNorm, conv2: Conv2d
    let timeEmbProj: Linear?
    let shortcut: Conv2d?

    init(_ w: WeightSource, _ prefix: String, inC: Int, outC: Int, tembC: Int?, groups: Int, eps: Float) throws {
        norm1 = try GroupNorm(w, "\(prefix).norm1", inC, groups: groups, eps: eps)
        conv1 = try Conv2d(w, "\(prefix).conv1", inC, outC, kernel: 3)
        timeEmbProj = try tembC.map { try Linear(w, "\(prefix).time_emb_proj", $0, outC) }
        norm2 = try GroupNorm(w, "\(prefix).norm2", outC, groups: groups, eps: eps)
        conv2 = try Conv2d(w, "\(prefix).conv2", outC, outC, kernel: 3)
        shortcut = inC != outC ? try Conv2d(w, "\(prefix).conv_shortcut", inC, outC, kernel: 1, padding: 0) : nil
    }

    /// `tembSiLU` is SiLU(temb) [B, tembC], shared by every block.
    func callAsFunction(_ x: Tensor, tembSiLU: Tensor?) -> Tensor {
        var h = conv1(norm1(x, silu: true))
        if let proj = timeEmbProj, let t = tembSiLU { Ops.addChannelBiasInPlace(h, proj(t)) }
        h = conv2(norm2(h, silu: true))
        Ops.addInPlace(h, shortcut.map { $0(x) } ?? x)
        return h
    }
}
