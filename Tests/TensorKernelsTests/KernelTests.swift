import XCTest
import Foundation
import TensorKernels

/// Each kernel against a naive loop written here.
final class KernelTests: XCTestCase {
    func random(_ shape: [Int], _ seed: UInt64) -> Tensor { Tensor.randomNormal(shape: shape, seed: seed) }

    func assertClose(_ a: Tensor, _ b: [Float], tol: Float = 1e-4, _ what: String) {
        XCTAssertEqual(a.count, b.count, what)
        let scale = max(b.map { abs($0) }.max() ?? 1, 1e-6)
        var worst: Float = 0
        for i in 0..<min(a.count, b.count) { worst = max(worst, abs(a.data[i] - b[i])) }
        XCTAssertLessThanOrEqual(worst / scale, tol, "\(what): max relative error \(worst / scale)")
    }

    func testConv2dMatchesNaive() {
        for (stride, pad, k) in [(1, (1, 1, 1, 1), 3), (2, (1, 1, 1, 1), 3), (2, (0, 0, 1, 1), 3),
                                 (1, (0, 0, 0, 0), 1)] {
            let x = random([2, 3, 7, 9], 1), w = random([5, 3, k, k], 2), bias = random([5], 3)
            let y = Ops.conv2d(x, weight: w, bias: bias, stride: stride, pad: (pad.0, pad.1, pad.2, pad.3))
            let oh = (7 + pad.0 + pad.2 - k) / stride + 1, ow = (9 + pad.1 + pad.3 - k) / stride + 1
            XCTAssertEqual(y.shape, [2, 5, oh, ow])
            var ref = [Float](repeating: 0, count: 2 * 5 * oh * ow)
            for n in 0..<2 { for o in 0..<5 { for oy in 0..<oh { for ox in 0..<ow {
                var s = bias.data[o]
                for c in 0..<3 { for ky in 0..<k { for kx in 0..<k {
                    let iy = oy * stride + ky - pad.0, ix = ox * stride + kx - pad.1
                    if iy >= 0 && iy < 7 && ix >= 0 && ix < 9 {
                        s += x.data[((n * 3 + c) * 7 + iy) * 9 + ix] * w.data[((o * 3 + c) * k + ky) * k + kx]
                    }
                } } }
                ref[((n * 5 + o) * oh + oy) * ow + ox] = s
            } } } }
            assertClose(y, ref, "conv stride \(stride) pad \(pad) k \(k)")
            // Without bias (the GEMM overwrites instead of accumulating): the same minus the bias.
            let plain = Ops.conv2d(x, weight: w, bias: nil, stride: stride, pad: (pad.0, pad.1, pad.2, pad.3))
            assertClose(plain, ref.enumerated().map { $0.element - bias.data[($0.offset / (oh * ow)) % 5] },
                        "conv without bias")
        }
    }

    func testGroupNormAndSiLU() {
        let x = random([2, 8, 5, 3], 4), w = random([8], 5), b = random([8], 6)
        let y = Ops.groupNorm(x, groups: 4, weight: w, bias: b, eps: 1e-5, silu: true)
        var ref = [Float](repeating: 0, count: x.count)
        for n in 0..<2 { for g in 0..<4 {
            let idx = (0..<2).flatMap { c in (0..<15).map { ((n * 8 + g * 2 + c) * 15) + $0 } }
            let mean = idx.map { Double(x.data[$0]) }.reduce(0, +) / Double(idx.count)
            let v = idx.map { pow(Double(x.data[$0]) - mean, 2) }.reduce(0, +) / Double(idx.count)
            for i in idx {
                let c = (i / 15) % 8
                let t = Float((Double(x.data[i]) - mean) / (v + 1e-5).squareRoot()) * w.data[c] + b.data[c]
                ref[i] = t / (1 + exp(-t))
            }
        } }
        assertClose(y, ref, "groupNorm+silu")
    }

    func testLayerNormLinearGeglu() {
        let x = random([3, 4, 6], 7), w = random([6], 8), b = random([6], 9)
        let y = Ops.layerNorm(x, weight: w, bias: b, eps: 1e-5)
        var ref = [Float](repeating: 0, count: x.count)
        for r in 0..<12 {
            let row = (0..<6).map { Double(x.data[r * 6 + $0]) }
            let m = row.reduce(0, +) / 6, v = row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / 6
            for i in 0..<6 { ref[r * 6 + i] = Float((row[i] - m) / (v + 1e-5).squareRoot()) * w.data[i] + b.data[i] }
        }
        assertClose(y, ref, "layerNorm")

        let weight = random([5, 6], 10), bias = random([5], 11)
        let l = Ops.linear(x, weight: weight, bias: bias)
        XCTAssertEqual(l.shape, [3, 4, 5])
        var lref = [Float](repeating: 0, count: 60)
        for r in 0..<12 { for o in 0..<5 {
            lref[r * 5 + o] = bias.data[o]
                + (0..<6).reduce(Float(0)) { $0 + x.data[r * 6 + $1] * weight.data[o * 6 + $1] }
        } }
        assertClose(l, lref, "linear")

        let g = Ops.geglu(x)
        var gref = [Float](repeating: 0, count: 36)
        for r in 0..<12 { for i in 0..<3 {
            let gate = x.data[r * 6 + 3 + i]
            let phi: Float = 0.5 * (1 + erf(gate / Float(2).squareRoot()))
            gref[r * 3 + i] = x.data[r * 6 + i] * gate * phi
        } }
        assertClose(g, gref, "geglu")
    }

    /// Online-softmax attention against the full softmax(QKᵀ/√d + w)V, over several key blocks: the BLAS path
    /// (head size 4, causal) and the tiled SIMD path (head sizes 8 and 40, ragged query rows and key panels).
    func testAttentionMatchesFullSoftmax() {
        for (nq, nk, causal, weighted, d) in [(300, 1500, false, true, 4), (77, 77, true, false, 4),
                                              (5, 2100, false, false, 4), (50, 300, false, true, 40),
                                              (97, 77, false, false, 8), (7, 1030, false, true, 8)] {
            let heads = 2, c = heads * d
            let q = random([2, nq, c], 12), k = random([2, nk, c], 13), v = random([2, nk, c], 14)
            let w = weighted ? Tensor.randomNormal(shape: [2, nk], seed: 15) : nil
            let y = Ops.attention(query: q, key: k, value: v, heads: heads, keyLogWeights: w, causal: causal)
            var ref = [Float](repeating: 0, count: 2 * nq * c)
            for b in 0..<2 { for h in 0..<heads { for i in 0..<nq {
                var s = (0..<nk).map { j -> Double in
                    if causal && j > i { return -Double.infinity }
                    var t = 0.0
                    for e in 0..<d {
                        t += Double(q.data[(b * nq + i) * c + h * d + e]) * Double(k.data[(b * nk + j) * c + h * d + e])
                    }
                    return t / Double(d).squareRoot() + Double(w?.data[b * nk + j] ?? 0)
                }
                let m = s.max()!
                s = s.map { exp($0 - m) }
                let z = s.reduce(0, +)
                for e in 0..<d {
                    var o = 0.0
                    for j in 0..<nk { o += s[j] / z * Double(v.data[(b * nk + j) * c + h * d + e]) }
                    ref[(b * nq + i) * c + h * d + e] = Float(o)
                }
            } } }
            assertClose(y, ref, "attention nq \(nq) nk \(nk) causal \(causal)")
        }
    }

    func testLayoutOps() {
        let x = random([2, 3, 4, 5], 16)
        let t = Ops.toTokens(x)
        XCTAssertEqual(t.shape, [2, 20, 3])
        XCTAssertEqual(t.data[(1 * 20 + 7) * 3 + 2], x.data[((1 * 3 + 2) * 4 + 1) * 5 + 2])
        XCTAssertEqual(Ops.fromTokens(t, height: 4, width: 5).array, x.array)
        let u = Ops.upsampleNearest2x(x)
        XCTAssertEqual(u.shape, [2, 3, 8, 10])
        XCTAssertEqual(u.data[((1 * 3 + 1) * 8 + 5) * 10 + 7], x.data[((1 * 3 + 1) * 4 + 2) * 5 + 3])
        // Any size: PyTorch's F.interpolate(size:, mode="nearest") picks input ⌊i·in/out⌋ (values printed by
        // torch 2.15).
        let row = Tensor(shape: [1, 1, 4, 3])
        for i in 0..<12 { row.data[i] = Float(i) }
        let r = Ops.upsampleNearest(row, height: 7, width: 7)
        XCTAssertEqual((0..<7).map { r.data[$0] }, [0, 0, 0, 1, 1, 2, 2])
        XCTAssertEqual((0..<7).map { r.data[$0 * 7] }, [0, 0, 3, 3, 6, 6, 9])
        XCTAssertEqual(Ops.upsampleNearest(x, height: 8, width: 10).array, u.array)
        let parts = Ops.split(x, dim: 1, sizes: [1, 2])
        XCTAssertEqual(Ops.concat(parts, dim: 1).array, x.array)
        XCTAssertEqual(parts[1].shape, [2, 2, 4, 5])
    }

    func testRandomIsReproducible() {
        XCTAssertEqual(Tensor.randomNormal(shape: [1000], seed: 3).array,
                       Tensor.randomNormal(shape: [1000], seed: 3).array)
        XCTAssertNotEqual(Tensor.randomNormal(shape: [1000], seed: 3).array,
                          Tensor.randomNormal(shape: [1000], seed: 4).array)
        let r = Tensor.randomNormal(shape: [100_000], seed: 9).array
        let mean = r.reduce(0, +) / Float(r.count)
        XCTAssertLessThan(abs(mean), 0.02)
    }

    /// The vectorised exp behind softmax and SiLU: within 5e-7 relative of expf on [−87, 88) (inputs are clamped to
    /// 88), 0 for −∞.
    func testFastExp() {
        var worst: Float = 0
        var x: Float = -87
        while x < 87.9 {
            let v = Ops.exp8(SIMD8<Float>((0..<8).map { x + Float($0) * 0.0137 }))
            for k in 0..<8 where x + Float(k) * 0.0137 < 88 {
                let e = expf(x + Float(k) * 0.0137)
                worst = max(worst, abs(v[k] - e) / e)
            }
            x += 0.1093
        }
        XCTAssertLessThan(worst, 5e-7)
        XCTAssertEqual(Ops.exp8(SIMD8(repeating: -.infinity))[0], 0)
        var row: [Float] = [1, 2, 3, -.infinity, 0.5, 7, 1, 1, 2, 3, 4]
        let sum = row.withUnsafeMutableBufferPointer { Ops.expShiftSum($0.baseAddress!, $0.count, minus: 7) }
        XCTAssertEqual(row[3], 0)
        XCTAssertEqual(sum, [1, 2, 3, 0.5, 7, 1, 1, 2, 3, 4].reduce(Float(0)) { $0 + expf($1 - 7) }, accuracy: 1e-6)
    }

    /// The vectorised normal CDF (GELU's gate) against erfc in double precision over [−12, 12].
    func testNormalCDF() {
        var worstAbs = 0.0, worstRel = 0.0
        var x: Float = -12
        while x < 12 {
            let lanes = SIMD8<Float>((0..<8).map { x + Float($0) * 0.0071 })
            let v = Ops.normalCDF8(lanes)
            for k in 0..<8 {
                let ref = 0.5 * erfc(-Double(lanes[k]) / 2.0.squareRoot())
                worstAbs = max(worstAbs, abs(Double(v[k]) - ref))
                if ref > 1e-30 { worstRel = max(worstRel, abs(Double(v[k]) - ref) / ref) }
            }
            x += 0.0611
        }
        XCTAssertLessThan(worstAbs, 2e-7)
        XCTAssertLessThan(worstRel, 2e-5) // deep in the lower tail (Φ ~ 1e-24) z² rounds in f32: 1.3e-5
    }

    /// Winograd F(2×2, 3×3) equals the im2col convolution (odd and even sizes, batch > 1, with and without bias).
    func testWinogradConvolution() {
        for (n, c, o, h, w) in [(2, 5, 7, 6, 8), (3, 4, 3, 7, 5), (1, 16, 8, 1 + 2, 9), (1, 8, 4, 1, 1),
                                (2, 3, 5, 19, 37), (1, 4, 4, 2, 16)] {
            let x = Tensor.randomNormal(shape: [n, c, h, w], seed: 11)
            let wt = Tensor.randomNormal(shape: [o, c, 3, 3], seed: 12)
            let bias = Tensor.randomNormal(shape: [o], seed: 13)
            for b in [bias, nil] {
                let ref = Ops.conv2d(x, weight: wt, bias: b, stride: 1, padding: 1)
                let y = Ops.conv2dWinograd(x, weight: WinogradWeight(wt), bias: b)
                XCTAssertEqual(y.shape, ref.shape)
                var err: Float = 0, scale: Float = 0
                for i in 0..<y.count {
                    err = max(err, abs(y.data[i] - ref.data[i])); scale = max(scale, abs(ref.data[i]))
                }
                XCTAssertLessThan(err / scale, 1e-5, "\(n)×\(c)×\(h)×\(w) → \(o)")
                // In bands of 1, 2 and 3 tile rows (as a large image runs): the same sums, up to the GEMM's
                // rounding at another width (OpenBLAS blocks narrow matrices differently: ~1e-7 relative).
                let tw = (w + 1) / 2
                for rows in [1, 2, 3] {
                    let banded = Ops.conv2dWinograd(x, weight: WinogradWeight(wt), bias: b,
                                                    chunkFloats: rows * 16 * max(c, o) * tw)
                    var bandErr: Float = 0
                    for i in 0..<y.count { bandErr = max(bandErr, abs(banded.data[i] - y.data[i])) }
                    XCTAssertLessThan(bandErr / scale, 1e-6, "\(n)×\(c)×\(h)×\(w) → \(o), bands of \(rows)")
                }
            }
        }
    }

    /// Empty inputs (batch 0, no channels, an empty image, no features) give empty outputs: `ocdedit model unet`
    /// with batch 0 used to divide by zero in groupNorm.
    func testNormsOfEmptyInputsAreEmpty() {
        for shape in [[0, 8, 4, 4], [2, 8, 0, 4], [0, 0, 3, 3]] {
            let y = Ops.groupNorm(Tensor(shape: shape), groups: 4, weight: nil, bias: nil, eps: 1e-5, silu: true)
            XCTAssertEqual(y.shape, shape)
            XCTAssertEqual(y.count, 0)
        }
        for shape in [[0, 77, 32], [2, 0, 32], [2, 3, 0], [0]] {
            let y = Ops.layerNorm(Tensor(shape: shape), weight: nil, bias: nil, eps: 1e-5)
            XCTAssertEqual(y.shape, shape)
            XCTAssertEqual(y.count, 0)
        }
    }
}
