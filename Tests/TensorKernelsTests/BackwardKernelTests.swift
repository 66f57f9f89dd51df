import XCTest
import TensorKernels

/// Each input gradient against central finite differences of its forward kernel: for loss(x) = Σ r ⊙ f(x) with a
/// random r, the gradient's component along a random direction e, Σ ∂loss/∂x ⊙ e, must match
/// (loss(x + εe) − loss(x − εe)) / 2ε.
final class BackwardKernelTests: XCTestCase {
    func random(_ shape: [Int], _ seed: UInt64, std: Float = 1) -> Tensor {
        Tensor.randomNormal(shape: shape, seed: seed, std: std)
    }

    /// Checks `gradient` (of Σ r ⊙ forward(x), r = `outputGradient`) against finite differences along 3 directions.
    func assertGradient(_ what: String, at x: Tensor, outputGradient r: Tensor, epsilon: Float = 1e-2,
                        tolerance: Double = 2e-3, forward: (Tensor) -> Tensor, gradient: Tensor,
                        file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(gradient.shape, x.shape, what, file: file, line: line)
        func loss(_ input: Tensor) -> Double {
            let y = forward(input)
            precondition(y.count == r.count, "\(what): output \(y.shape) against r \(r.shape)")
            var s = 0.0
            for i in 0..<y.count { s += Double(y.data[i]) * Double(r.data[i]) }
            return s
        }
        for seed in UInt64(100)..<103 {
            let e = random(x.shape, seed)
            let plus = x.copy(), minus = x.copy()
            for i in 0..<x.count { plus.data[i] += epsilon * e.data[i]; minus.data[i] -= epsilon * e.data[i] }
            let numeric = (loss(plus) - loss(minus)) / (2 * Double(epsilon))
            var analytic = 0.0
            for i in 0..<x.count { analytic += Double(gradient.data[i]) * Double(e.data[i]) }
            let relative = abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1)
            XCTAssertLessThan(relative, tolerance, "\(what): finite difference \(numeric), gradient \(analytic)",
                              file: file, line: line)
        }
    }

    func testLinear() {
        let x = random([2, 5, 6], 1), w = random([7, 6], 2), bias = random([7], 3), r = random([2, 5, 7], 4)
        assertGradient("linear", at: x, outputGradient: r, forward: { Ops.linear($0, weight: w, bias: bias) },
                       gradient: Ops.linearInputGradient(r, weight: w))
    }

    func testConvolutions() {
        for (stride, pad, k) in [(1, (1, 1, 1, 1), 3), (2, (1, 1, 1, 1), 3), (2, (0, 0, 1, 1), 3),
                                 (1, (0, 0, 0, 0), 1)] {
            let pads = (pad.0, pad.1, pad.2, pad.3)
            let x = random([2, 3, 7, 9], 1), w = random([5, 3, k, k], 2), bias = random([5], 3)
            let y = Ops.conv2d(x, weight: w, bias: bias, stride: stride, pad: pads)
            let r = random(y.shape, 4)
            assertGradient("conv k \(k) stride \(stride) pad \(pad)", at: x, outputGradient: r,
                           forward: { Ops.conv2d($0, weight: w, bias: bias, stride: stride, pad: pads) },
                           gradient: Ops.conv2dInputGradient(r, weight: w, inputHeight: 7, inputWidth: 9,
                                                             stride: stride, pad: pads))
        }
    }

    /// The Winograd path: the weight recovered from the Winograd domain, and the flipped-kernel convolution.
    func testWinogradConvolution() {
        let w = random([24, 16, 3, 3], 5), weight = WinogradWeight(w)
        let recovered = weight.spatialWeight()
        var worst: Float = 0
        for i in 0..<w.count { worst = max(worst, abs(recovered.data[i] - w.data[i])) }
        XCTAssertLessThan(worst, 1e-5, "weight back from the Winograd domain")
        let x = random([2, 16, 6, 7], 6), r = random([2, 24, 6, 7], 7)
        assertGradient("winograd conv", at: x, outputGradient: r,
                       forward: { Ops.conv2dWinograd($0, weight: weight, bias: nil) },
                       gradient: Ops.conv2dWinogradInputGradient(r, inputGradientWeight: weight.inputGradientWeight()))
    }

    func testNorms() {
        let x = random([2, 8, 3, 5], 8, std: 2), gamma = random([8], 9), beta = random([8], 10)
        let r = random(x.shape, 11)
        for silu in [false, true] {
            assertGradient("group norm, silu \(silu)", at: x, outputGradient: r,
                           forward: { Ops.groupNorm($0, groups: 4, weight: gamma, bias: beta, eps: 1e-5, silu: silu) },
                           gradient: Ops.groupNormInputGradient(x, r, groups: 4, weight: gamma, bias: beta,
                                                                eps: 1e-5, silu: silu))
        }
        let t = random([3, 4, 10], 12, std: 2), g = random([10], 13), b = random([10], 14), rt = random(t.shape, 15)
        assertGradient("layer norm", at: t, outputGradient: rt,
                       forward: { Ops.layerNorm($0, weight: g, bias: b, eps: 1e-5) },
                       gradient: Ops.layerNormInputGradient(t, rt, weight: g, eps: 1e-5))
    }

    func testActivations() {
        let x = random([4, 16], 16, std: 2), r = random(x.shape, 17)
        assertGradient("silu", at: x, outputGradient: r, forward: { Ops.silu($0) },
                       gradient: Ops.siluInputGradient(x, r))
        let rg = random([4, 8], 18)
        assertGradient("geglu", at: x, outputGradient: rg, forward: { Ops.geglu($0) },
                       gradient: Ops.gegluInputGradient(x, rg))
    }

    func testUpsampleNearest() {
        for (h, w, oh, ow) in [(3, 4, 6, 8), (3, 3, 5, 7)] {
            let x = random([2, 2, h, w], 19), r = random([2, 2, oh, ow], 20)
            assertGradient("upsample \(h)×\(w) → \(oh)×\(ow)", at: x, outputGradient: r,
                           forward: { Ops.upsampleNearest($0, height: oh, width: ow) },
                           gradient: Ops.upsampleNearestInputGradient(r, inputHeight: h, inputWidth: w))
        }
    }

    /// Query, key and value gradients from the output's gradient and from the probabilities' (both at once too).
    func testAttention() {
        let (b, nq, nk, heads, c) = (2, 70, 9, 2, 16) // 70 query rows: two blocks, the second partial
        let q = random([b, nq, c], 21), k = random([b, nk, c], 22), v = random([b, nk, c], 23)
        let dO = random([b, nq, c], 24), dP = random([b, heads, nq, nk], 25)
        for (useOutput, useProbabilities) in [(true, false), (false, true), (true, true)] {
            let g = Ops.attentionGradients(query: q, key: k, value: v, heads: heads,
                                           outputGradient: useOutput ? dO : nil,
                                           probabilityGradient: useProbabilities ? dP : nil, keyValueGradients: true)
            // loss = Σ dO ⊙ O + Σ dP ⊙ P, as one output vector.
            func outputs(_ q: Tensor, _ k: Tensor, _ v: Tensor) -> Tensor {
                var parts: [Float] = []
                if useOutput { parts += Ops.attention(query: q, key: k, value: v, heads: heads).array }
                if useProbabilities { parts += Ops.attentionProbabilities(query: q, key: k, heads: heads).array }
                return Tensor(shape: [parts.count], values: parts)
            }
            let r = Tensor(shape: [(useOutput ? dO.count : 0) + (useProbabilities ? dP.count : 0)],
                           values: (useOutput ? dO.array : []) + (useProbabilities ? dP.array : []))
            let what = "attention, output \(useOutput), probabilities \(useProbabilities)"
            assertGradient("\(what): query", at: q, outputGradient: r, forward: { outputs($0, k, v) },
                           gradient: g.query)
            assertGradient("\(what): key", at: k, outputGradient: r, forward: { outputs(q, $0, v) },
                           gradient: g.key!)
            assertGradient("\(what): value", at: v, outputGradient: r, forward: { outputs(q, k, $0) },
                           gradient: g.value!)
        }
        let constantKeys = Ops.attentionGradients(query: q, key: k, value: v, heads: heads, outputGradient: dO,
                                                  probabilityGradient: nil, keyValueGradients: false)
        XCTAssertNil(constantKeys.key)
        XCTAssertNil(constantKeys.value)
    }
}
