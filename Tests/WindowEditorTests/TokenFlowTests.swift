import Foundation
import XCTest
import StableDiffusion
import TensorKernels
@testable import WindowEditor

/// mode=tokenflow: keyframe schedule, neighbours and weights, nearest-neighbour correspondences, and the editor with
/// it.
final class TokenFlowTests: XCTestCase {
    func testKeyframeSchedule() {
        let p = TokenFlowPropagation(frames: 8, steps: 16, interval: 4, seed: 7)
        XCTAssertEqual(p.keyframes.count, 16)
        for k in p.keyframes {
            XCTAssertEqual(k.count, 2)
            XCTAssertEqual(k[1] - k[0], 4)
            XCTAssertLessThan(k[0], 4)
        }
        XCTAssertGreaterThan(Set(p.keyframes.map { $0[0] }).count, 1, "the offset never changes")
        XCTAssertEqual(p.keyframes, TokenFlowPropagation(frames: 8, steps: 16, interval: 4, seed: 7).keyframes)
        XCTAssertEqual(TokenFlowPropagation(frames: 3, steps: 2, interval: 1, seed: 0).keyframes,
                       [[0, 1, 2], [0, 1, 2]])
    }

    func testNeighbours() {
        XCTAssertTrue(TokenFlowPropagation.neighbours(of: 3, keyframes: [1, 5]) == (1, 5, 0.5))
        XCTAssertTrue(TokenFlowPropagation.neighbours(of: 2, keyframes: [1, 5]) == (1, 5, 0.75))
        XCTAssertTrue(TokenFlowPropagation.neighbours(of: 0, keyframes: [1, 5]) == (1, 1, 1))
        XCTAssertTrue(TokenFlowPropagation.neighbours(of: 7, keyframes: [1, 5]) == (5, 5, 1))
    }

    /// Frame 1 is frame 0's tokens in reverse order, scaled (cosine ignores scale): the correspondence is the reversal.
    func testNearestNeighbourFields() {
        let (n, c) = (12, 5)
        var rng = SeededRandom(seed: 3)
        let x = Tensor(shape: [3, n, c])
        for i in 0..<(n * c) { x.data[i] = Float(Double(rng.next() % 2000) / 1000 - 1) }
        for t in 0..<n { for k in 0..<c {
            x.data[(n + t) * c + k] = 2 * x.data[(n - 1 - t) * c + k]
            x.data[(2 * n + t) * c + k] = x.data[t * c + k]
        } }
        // A seed whose offset is 0 (keyframes 0 and 2; the other offset gives keyframe 1 only).
        let seed = (0..<64).first {
            TokenFlowPropagation(frames: 3, steps: 1, interval: 2, seed: $0).keyframes[0] == [0, 2]
        }!
        let p = TokenFlowPropagation(frames: 3, steps: 1, interval: 2, seed: seed)
        p.record(x, layer: "l", step: 0)
        let prop = try! XCTUnwrap(p.propagation(Ops.concat([x, x], dim: 0), layer: "l", step: 0, halves: 2))
        XCTAssertEqual(prop.computed, [0, 2, 3, 5])
        XCTAssertEqual(prop.groups.itemGroups, [[0, 1], [0, 1], [2, 3], [2, 3]])
        let s = try! XCTUnwrap(prop.sources[1])
        XCTAssertEqual(s.indexA, (0..<n).map { Int32(n - 1 - $0) })
        XCTAssertEqual(s.indexB, (0..<n).map { Int32(n - 1 - $0) })
        XCTAssertEqual(s.weightA, 0.5)
        XCTAssertEqual(prop.sources[4]?.itemA, 3)
        XCTAssertEqual(prop.sources[4]?.itemB, 5)
        XCTAssertNil(p.propagation(x, layer: "other", step: 0, halves: 1))
    }

    /// With the bundled model: same UNet calls as the baseline, fewer attention pairs, background bytes kept beyond
    /// the feather, the inside edited, the same seed the same bytes.
    func testTokenFlowEdit() throws {
        let pipe = try XCTUnwrap(DiffusionEditorTests.pipeline)
        let w = DiffusionEditorTests.window(frames: 4)
        var s = DiffusionEditorTests.settings {
            $0.steps = 8
            $0.seed = 0
            $0.keyframeInterval = 2
            $0.crossFrame = .all
        }
        var reports: [EditMode: SamplingReport] = [:], outputs: [EditMode: [Frame]] = [:]
        for mode in [EditMode.baseline, .tokenflow] {
            s.mode = mode
            let editor = try DiffusionWindowEditor(pipeline: pipe, settings: s)
            outputs[mode] = try editor.edit(frames: w.frames, masks: w.masks, isCancelled: DiffusionEditorTests.never)
            reports[mode] = editor.lastReport.sampling
        }
        let flow = reports[.tokenflow]!, base = reports[.baseline]!
        print("tokenflow: \(flow.attentionPairs) attention pairs vs baseline \(base.attentionPairs)")
        XCTAssertEqual(flow.unetCalls, base.unetCalls)
        XCTAssertLessThan(flow.attentionPairs, base.attentionPairs)
        let out = try XCTUnwrap(outputs[.tokenflow])
        XCTAssertNotEqual(out, outputs[.baseline])
        for i in 0..<4 {
            let alpha = FeatherMask(mask: w.masks[i], threshold: s.maskThreshold, feather: s.feather)
            var changed = 0
            for k in 0..<(64 * 48) { for c in 0..<3
                where out[i].planes[0][3 * k + c] != w.frames[i].planes[0][3 * k + c] {
                XCTAssertGreaterThan(alpha.alpha[k], 0, "frame \(i) pixel \(k) changed outside the feathered mask")
                changed += 1
            } }
            XCTAssertGreaterThan(changed, 50, "frame \(i) was not edited")
        }
        let again = try DiffusionWindowEditor(pipeline: pipe, settings: s)
            .edit(frames: w.frames, masks: w.masks, isCancelled: DiffusionEditorTests.never)
        XCTAssertEqual(again, out)
    }
}
