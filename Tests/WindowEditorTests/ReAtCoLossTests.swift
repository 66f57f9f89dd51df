import XCTest
import StableDiffusion
import TensorKernels
@testable import WindowEditor

/// ReAtCo's attention loss through the UNet (the contract of `ocdedit model reatco-grad`) against PyTorch autograd
/// through diffusers' UNet (Tests/Fixtures/make_gradient_fixtures.py): loss, ∂loss/∂sample and the smoothed maps,
/// two words with box regions over 3 frames, on the SD1- and SD2-style tiny models at both levels.
final class ReAtCoLossTests: XCTestCase {
    func testLossGradientAndMapsMatchAutograd() throws {
        for model in ["tiny-sd1", "tiny-sd2"] {
            let unet = try UNet2DConditionModel(folder: Fixtures.url("\(model)/unet"))
            for level in 0..<2 {
                let reference = "\(model)/reference/reatco_grad_L\(level)"
                let input = try SafetensorsFile(url: Fixtures.url("\(reference)_in.safetensors"))
                let expected = try SafetensorsFile(url: Fixtures.url("\(reference)_out.safetensors"))
                let regions = try input.tensor("regions")
                let loss = ReAtCoAttentionLoss(tokenIndices: try input.int64s("token_indices").values.map { Int($0) },
                                               regions: regions)
                var maps: [[[Float]]] = []
                let result = unet.crossAttentionGradient(
                    try input.tensor("sample"), timesteps: try input.tensor("timestep").array,
                    encoderHiddenStates: try input.tensor("encoder_hidden_states"), level: level,
                    weights: BackwardWeights()
                ) {
                    let r = loss($0)
                    maps = r.maps
                    return (r.loss, r.probabilityGradients)
                }
                let what = "\(model) level \(level)"
                let referenceLoss = try expected.tensor("loss").array[0]
                XCTAssertEqual(result.loss, referenceLoss, accuracy: 1e-4 * max(1, abs(referenceLoss)), what)
                let gradientError = relativeMaxError(result.gradient, try expected.tensor("grad"))
                XCTAssertLessThanOrEqual(gradientError, 1e-3, "\(what): gradient relative max error \(gradientError)")
                let mapTensor = Tensor(shape: regions.shape, values: Array(maps.joined().joined()))
                let mapError = relativeMaxError(mapTensor, try expected.tensor("maps"))
                XCTAssertLessThanOrEqual(mapError, 1e-4, "\(what): maps relative max error \(mapError)")
                XCTAssertGreaterThan(result.gradient.array.map(abs).max() ?? 0, 0, "\(what): a gradient at all")
            }
        }
    }

    /// The loss's own gradient (smoothing adjoint, softmax, average over layers and heads) against finite
    /// differences in the probabilities, without the UNet.
    func testProbabilityGradientMatchesFiniteDifferences() {
        let (frames, heads, h, w) = (3, 2, 3, 4)
        // Small noise over a ramp across the cells for the two words' tokens: the top-k cells are well apart, so the
        // finite differences do not change which cells they are.
        let layers = (0..<2).map { layer -> Tensor in
            let p = Tensor.randomNormal(shape: [frames, heads, h * w, 77], seed: 40 + UInt64(layer), std: 0.01)
            for f in 0..<frames { for head in 0..<heads { for i in 0..<(h * w) { for token in [3, 7] {
                p.data[((f * heads + head) * h * w + i) * 77 + token] += 0.004 * Float((i * (token == 3 ? 5 : 7)) % 12)
            } } } }
            return p
        }
        let regions: [[[Float]]] = [(0..<frames).map { f in (0..<(h * w)).map { $0 % w >= f ? 1 : 0 } },
                                    (0..<frames).map { _ in (0..<(h * w)).map { $0 / w == 1 ? 1 : 0 } }]
        let loss = ReAtCoAttentionLoss(tokenIndices: [3, 7], regions: regions)
        func value(_ p: [Tensor]) -> Float {
            loss(CrossAttentionMaps(names: ["a", "b"], probabilities: p, height: h, width: w)).loss
        }
        let result = loss(CrossAttentionMaps(names: ["a", "b"], probabilities: layers, height: h, width: w))
        XCTAssertGreaterThan(result.loss, 0)
        let epsilon: Float = 1e-3
        for seed in UInt64(60)..<63 {
            let directions = layers.indices.map {
                Tensor.randomNormal(shape: layers[$0].shape, seed: seed * 10 + UInt64($0))
            }
            func moved(_ sign: Float) -> [Tensor] {
                zip(layers, directions).map { p, e in
                    let q = p.copy()
                    for i in 0..<q.count { q.data[i] += sign * epsilon * e.data[i] }
                    return q
                }
            }
            let numeric = Double(value(moved(1)) - value(moved(-1))) / Double(2 * epsilon)
            var analytic = 0.0
            for (g, e) in zip(result.probabilityGradients, directions) {
                for i in 0..<g.count { analytic += Double(g.data[i]) * Double(e.data[i]) }
            }
            XCTAssertEqual(analytic, numeric, accuracy: 2e-2 * max(1, abs(numeric)),
                           "direction \(seed): gradient \(analytic), finite difference \(numeric)")
        }
    }
}

/// max|a − b| / max|b|.
private func relativeMaxError(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.count == b.count, "\(a.shape) vs \(b.shape)")
    var diff: Float = 0, scale: Float = 0
    for i in 0..<a.count { diff = max(diff, abs(a.data[i] - b.data[i])); scale = max(scale, abs(b.data[i])) }
    return diff / max(scale, 1e-12)
}

/// RAD (AttentionRefocusing): its updates lower ReAtCo's loss, and its refinement loop runs where the schedule says.
final class AttentionRefocusingTests: XCTestCase {
    func refocusing(steps: Int, refinementIterations: Int) throws -> (AttentionRefocusing, Tensor) {
        let unet = try UNet2DConditionModel(folder: Fixtures.url("tiny-sd1/unet"))
        let (frames, h, w) = (3, 8, 12)
        let regions: [[[Float]]] = [0, 1].map { word in
            Array(repeating: (0..<(h * w)).map { ($0 % w < w / 2) == (word == 0) ? 1 : 0 }, count: frames)
        }
        let config = AttentionRefocusing.Config(share: 0.5, scale: 1e4, refinementIterations: refinementIterations,
                                                level: 0)
        let r = AttentionRefocusing(config: config, unet: unet, weights: BackwardWeights(),
                                    context: Tensor.randomNormal(shape: [frames, 77, 32], seed: 71),
                                    loss: ReAtCoAttentionLoss(tokenIndices: [2, 5], regions: regions), steps: steps)
        return (r, Tensor.randomNormal(shape: [frames, 4, h, w], seed: 70))
    }

    func testUpdatesLowerTheLoss() throws {
        let (refocusing, start) = try refocusing(steps: 10, refinementIterations: 0)
        XCTAssertEqual(refocusing.refocusedSteps, 5)
        var latent = start, losses: [Float] = []
        for i in 0..<10 {
            let r = try refocusing(latent, editStep: i, timestep: 500)
            XCTAssertEqual(r.losses.count, i < 5 ? 1 : 0, "step \(i)")
            latent = r.latent
            losses += r.losses
        }
        losses.append(refocusing.gradient(latent, timestep: 500).loss)
        print("RAD losses: \(losses)")
        for (before, after) in zip(losses, losses.dropFirst()) { XCTAssertLessThan(after, before) }
        XCTAssertLessThan(losses.last!, losses.first! - 1e-3)
        XCTAssertEqual(refocusing.stepSize(0), 1e4)
        XCTAssertEqual(refocusing.stepSize(9), 1e4 * Float(0.5).squareRoot(), accuracy: 0.1)
    }

    /// At 0 %, 20 % and 40 % of the steps the foreground-only loop runs first, at most refinement-iterations times
    /// (the tiny model's words stay far below every threshold, so it runs them all).
    func testRefinementSteps() throws {
        let (refocusing, start) = try refocusing(steps: 10, refinementIterations: 2)
        XCTAssertEqual((0..<10).compactMap { refocusing.refinementThreshold($0) }, [0.05, 0.5, 0.8])
        XCTAssertEqual(refocusing.refinementThreshold(2), 0.5)
        XCTAssertEqual(try refocusing(start, editStep: 0, timestep: 500).losses.count, 3)
        XCTAssertEqual(try refocusing(start, editStep: 1, timestep: 500).losses.count, 1)
    }
}

extension AttentionRefocusingTests {
    /// Two steps put the 0 % and 20 % refinements on step 0: the higher threshold applies there.
    func testFewStepsKeepTheHigherThreshold() throws {
        let (refocusing, _) = try refocusing(steps: 2, refinementIterations: 1)
        XCTAssertEqual(refocusing.refinementThreshold(0), 0.5)
        XCTAssertEqual(refocusing.refinementThreshold(1), 0.8)
    }
}
