import XCTest
@testable import EvalKit
import WindowEditor

/// The metrics on synthetic clips whose answers are known.
final class MetricsTests: XCTestCase {
    func tally(_ clip: EvalClip, _ outputs: [Frame], window: Int = 8, expected: String = "blue",
               composites: [Mask]? = nil) -> EvalTally {
        var t = EvalTally()
        t.add(clip, outputs: outputs, windowSize: window, expectedColor: expected, threshold: 128, feather: 8,
              compositeMasks: composites)
        return t
    }

    func testIdenticalOutputOfStaticObject() {
        let clip = TestClips.clip(dx: 0, dy: 0)
        let t = tally(clip, clip.frames, expected: "red")
        XCTAssertEqual(t.frames, 4)
        XCTAssertEqual(t.backgroundExact, 1)
        XCTAssertEqual(t.warpError, 0)
        XCTAssertNil(t.boundaryWarpError, "one window: no pair straddles two")
        XCTAssertEqual(t.editAccuracy, 1, "the object stays red, red expected")
        XCTAssertNil(t.psnr, "identical: infinite PSNR is reported as nil")
        XCTAssertNil(t.maskIoU)
        XCTAssertEqual(tally(clip, clip.frames, expected: "blue").editAccuracy, 0)
    }

    /// The object moves by (2, 1) per frame: warping by the ground truth gives zero error; ignoring it does not.
    func testKnownDisplacementGivesZeroWarpError() {
        let clip = TestClips.clip(dx: 2, dy: 1)
        XCTAssertEqual(tally(clip, clip.frames).warpError, 0)
        // A displacement that misses the object (the object is one flat colour, so it must miss to show).
        var wrong = clip
        for f in 1..<wrong.meta.frames { wrong.meta.objects[0].displacements[f] = [10, 10] }
        XCTAssertGreaterThan(tally(wrong, wrong.frames).warpError!, 10)
    }

    /// Pairs are split by window: a change in frame 2 shows in the pair (1, 2), which straddles windows of 2.
    func testWindowBoundaryPairs() {
        let clip = TestClips.clip(frames: 4)
        var outputs = clip.frames
        outputs[2] = TestClips.paint(outputs[2], clip.masks[2], [220, 40, 30])
        outputs[3] = TestClips.paint(outputs[3], clip.masks[3], [220, 40, 30])
        let t = tally(clip, outputs, window: 2)
        XCTAssertEqual(t.warpError, 0, "pairs (0, 1) and (2, 3) see the same colour on both sides")
        // Pair (1, 2): G differs by 10 on every interior pixel: 10 / 3 per pixel-channel.
        XCTAssertEqual(t.boundaryWarpError!, 10.0 / 3, accuracy: 1e-9)
        // One window: the change now falls inside it, averaged over the three pairs.
        XCTAssertEqual(tally(clip, outputs, window: 4).warpError!, 10.0 / 9, accuracy: 1e-9)
    }

    func testEditAccuracyFollowsTheObjectsColour() {
        let clip = TestClips.clip(frames: 4)
        var outputs = clip.frames
        for f in 0..<2 { outputs[f] = TestClips.paint(outputs[f], clip.masks[f], [40, 80, 200]) }   // nearest blue
        // Frame 3: only the edge recoloured green, the interior stays red: the eroded mean stays red.
        let edge = Mask(width: 32, height: 32, pixels: zip(clip.masks[3].pixels,
            EvalMetrics.eroded(EvalMetrics.binary(clip.masks[3], threshold: 128), width: 32, height: 32, radius: 2))
            .map { $0 >= 128 && !$1 ? 255 : 0 })
        outputs[3] = TestClips.paint(outputs[3], edge, [30, 170, 50])
        let t = tally(clip, outputs, expected: "blue")
        XCTAssertEqual(t.editAccuracy, 0.5)
        XCTAssertEqual(tally(clip, outputs, expected: "red").editAccuracy, 0.5)
    }

    func testBackgroundExactCountsBytesBeyondTheFeather() {
        let clip = TestClips.clip(frames: 1)
        var out = clip.frames[0]
        // Next to the object (inside the feather's reach of 4 px): not background.
        let nearIndex = 3 * (8 * 32 + 5)
        out.planes[0][nearIndex] &+= 1
        XCTAssertEqual(tally(clip, [out]).backgroundExact, 1)
        // Far away (pixel (30, 30)): background, one of them changed.
        out.planes[0][3 * (30 * 32 + 30) + 2] &+= 1
        let t = tally(clip, [out])
        let alpha = FeatherMask(mask: clip.masks[0], threshold: 128, feather: 8).alpha
        let background = alpha.filter { $0 == 0 }.count
        XCTAssertEqual(t.backgroundPixels, background)
        XCTAssertEqual(t.backgroundExact!, Double(background - 1) / Double(background), accuracy: 1e-12)
        XCTAssertEqual(background, 32 * 32 - 16 * 16, "8×8 square grown by 4 px on each side")
    }

    func testMaskIoUAndErosion() {
        func square(_ x0: Int, _ y0: Int, _ side: Int, size: Int = 16) -> Mask {
            var p = [UInt8](repeating: 0, count: size * size)
            for y in y0..<(y0 + side) { for x in x0..<(x0 + side) { p[y * size + x] = 255 } }
            return Mask(width: size, height: size, pixels: p)
        }
        let c = EvalMetrics.iouCounts(square(0, 0, 4), square(2, 0, 4), threshold: 128)
        XCTAssertEqual(c.intersection, 8)
        XCTAssertEqual(c.union, 24)
        var clip = TestClips.clip(frames: 2, size: 16, side: 4, x0: 0, y0: 0, dx: 0, dy: 0)
        clip.meta.objects[0].displacements = [[0, 0], [0, 0]]
        let t = tally(clip, clip.frames, composites: [square(2, 0, 4), square(0, 0, 4)])
        XCTAssertEqual(t.maskIoU!, (8.0 + 16) / (24 + 16), accuracy: 1e-12)

        // 7×7 square eroded by 2 → 3×3; at the frame's corner the border does not erode.
        XCTAssertEqual(EvalMetrics.eroded(EvalMetrics.binary(square(5, 5, 7), threshold: 128), width: 16, height: 16,
                                          radius: 2).filter { $0 }.count, 9)
        XCTAssertEqual(EvalMetrics.eroded(EvalMetrics.binary(square(0, 0, 7), threshold: 128), width: 16, height: 16,
                                          radius: 2).filter { $0 }.count, 25)
        // A 3×3 object erodes away: the interior falls back to the plain mask.
        XCTAssertEqual(EvalMetrics.interior(square(5, 5, 3), threshold: 128).filter { $0 }.count, 9)
    }

    func testPSNRAndFidelityOnlyTally() {
        let clip = TestClips.clip(frames: 2)
        let brighter = clip.frames.map { f -> Frame in
            var g = f
            g.planes[0] = g.planes[0].map { $0 == 255 ? 254 : $0 + 1 }
            return g
        }
        var t = EvalTally()
        t.measuresEdit = false
        t.add(clip, outputs: brighter, windowSize: 8, expectedColor: "blue", threshold: 128, feather: 8)
        XCTAssertEqual(t.psnr!, 20 * log10(255.0), accuracy: 1e-9)
        XCTAssertNil(t.editAccuracy)
        XCTAssertNil(t.backgroundExact)
        XCTAssertNil(t.warpError)
        XCTAssertNil(t.maskIoU)
        var merged = EvalTally()
        merged.merge(t)
        merged.merge(t)
        XCTAssertEqual(merged.frames, 4)
        XCTAssertEqual(merged.psnr!, t.psnr!, accuracy: 1e-12)
    }

    func testNearestColourAndMean() {
        let palette = TestClips.palette
        XCTAssertEqual(EvalMetrics.nearestColor([200, 50, 40], palette: palette), "red")
        XCTAssertEqual(EvalMetrics.nearestColor([0, 0, 255], palette: palette), "blue")
        let frame = Frame(format: .rgb, width: 2, height: 1, planes: [[10, 20, 30, 30, 40, 50]])
        XCTAssertEqual(EvalMetrics.meanColor(frame, [true, true]), [20, 30, 40])
        XCTAssertNil(EvalMetrics.meanColor(frame, [false, false]))
    }

    func testSettingArguments() throws {
        let allowed = ["steps", "ocd-sampling", "feather", "preserve-background", "cross-frame", "negative-prompt"]
        var s = EditorSettings()
        s.ocdSampling = false
        let set = try SettingArguments.apply(["--steps", "5", "--ocd-sampling", "--feather=3", "--preserve-background",
                                              "false", "--cross-frame", "all", "--negative-prompt", "blurry, dark"],
                                             to: &s, allowed: allowed)
        XCTAssertEqual(set, Set(allowed))
        XCTAssertEqual(s.steps, 5)
        XCTAssertTrue(s.ocdSampling)
        XCTAssertEqual(s.feather, 3)
        XCTAssertFalse(s.preserveBackground)
        XCTAssertEqual(s.crossFrame, .all)
        XCTAssertEqual(s.negativePrompt, "blurry, dark")
        func message(_ tokens: [String]) -> String {
            var s = EditorSettings()
            do { try SettingArguments.apply(tokens, to: &s, allowed: allowed) } catch { return "\(error)" }
            return "no error"
        }
        XCTAssertTrue(message(["--prompt", "x"]).contains("unknown option '--prompt'"))
        XCTAssertTrue(message(["--bogus=1"]).contains("editor settings: steps, ocd-sampling"))
        XCTAssertTrue(message(["--steps"]).contains("needs a value"))
        XCTAssertTrue(message(["--steps", "--feather", "2"]).contains("needs a value"))
        XCTAssertTrue(message(["--steps", "2000"]).contains("out of range"))
        XCTAssertTrue(message(["5"]).contains("unexpected argument"))
    }
}
