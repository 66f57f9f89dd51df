import Foundation
import XCTest
@testable import WindowEditor

/// window-overlap: the context a window carries into the next (the stream's first frame, then the previous window's
/// last frames), and editors that take context frames return their window's own frames only, once each, in order.
final class WindowOverlapTests: XCTestCase {
    /// A 4×2 frame whose first byte is `i` (and a mask whose first byte is `i`), to tell frames apart.
    func stamped(_ i: Int, width: Int = 4, height: Int = 2) -> (Frame, Mask) {
        var rgb = [UInt8](repeating: 50, count: width * height * 3)
        rgb[0] = UInt8(i)
        var m = [UInt8](repeating: 0, count: width * height)
        m[0] = UInt8(i)
        return (Frame(format: .rgb, width: width, height: height, planes: [rgb]),
                Mask(width: width, height: height, pixels: m))
    }

    /// The stamps of a context's frames (and checks its masks go with them).
    func stamps(_ c: WindowContext) -> [Int] {
        XCTAssertEqual(c.frames.map { Int($0.planes[0][0]) }, c.masks.map { Int($0.pixels[0]) }, "masks follow")
        return c.frames.map { Int($0.planes[0][0]) }
    }

    /// Windows of `size` over `count` stamped frames through one carrier: each window's context stamps.
    func contexts(windowSize size: Int, count: Int, overlap: Int) -> [[Int]] {
        var carrier = WindowOverlap()
        return stride(from: 0, to: count, by: size).map { start in
            let w = (start..<min(count, start + size)).map { stamped($0) }
            return stamps(carrier.context(for: w.map(\.0), masks: w.map(\.1), overlap: overlap))
        }
    }

    func testContextIsTheAnchorThenThePreviousWindowsLastFrames() {
        XCTAssertEqual(contexts(windowSize: 4, count: 12, overlap: 0), [[], [], []])
        XCTAssertEqual(contexts(windowSize: 4, count: 12, overlap: 1), [[], [0], [0]])
        XCTAssertEqual(contexts(windowSize: 4, count: 12, overlap: 3), [[], [0, 2, 3], [0, 6, 7]])
        // The anchor is never there twice, and a short window takes the rest from the window before it.
        XCTAssertEqual(contexts(windowSize: 2, count: 8, overlap: 3), [[], [0, 1], [0, 2, 3], [0, 4, 5]])
        XCTAssertEqual(contexts(windowSize: 1, count: 5, overlap: 3), [[], [0], [0, 1], [0, 1, 2], [0, 2, 3]])
    }

    func testResetAndNewCapsStartANewAnchor() {
        var carrier = WindowOverlap()
        let a = (0..<3).map { stamped($0) }, b = (3..<6).map { stamped($0) }
        _ = carrier.context(for: a.map(\.0), masks: a.map(\.1), overlap: 2)
        carrier.reset()
        XCTAssertEqual(stamps(carrier.context(for: b.map(\.0), masks: b.map(\.1), overlap: 2)), [])
        let c = (6..<9).map { stamped($0) }
        XCTAssertEqual(stamps(carrier.context(for: c.map(\.0), masks: c.map(\.1), overlap: 2)), [3, 5])
        // Frames of another size: the held ones cannot join the window; the new size starts over.
        let big = (9..<12).map { stamped($0, width: 8) }, more = (12..<15).map { stamped($0, width: 8) }
        XCTAssertEqual(stamps(carrier.context(for: big.map(\.0), masks: big.map(\.1), overlap: 2)), [])
        XCTAssertEqual(stamps(carrier.context(for: more.map(\.0), masks: more.map(\.1), overlap: 2)), [9, 11])
    }

    /// mode=ocd with window-overlap rounds its crop up to a multiple of 4 cells: windows whose largest boxes differ
    /// by a cell (9 and 11 wide here) crop alike.
    func testCropSizeRoundedUpForOverlap() {
        func region(width bw: Int) -> [Float] {
            (0..<(16 * 16)).map { i in (i % 16) < bw && (i / 16) >= 2 && (i / 16) < 9 ? 1 : 0 }
        }
        for bw in [9, 10, 11] {
            let plain = LatentRegions.commonBoxes([region(width: bw)], height: 16, width: 16, margin: 0)
            let rounded = LatentRegions.commonBoxes([region(width: bw)], height: 16, width: 16, margin: 0,
                                                    sizeMultiple: 4)
            XCTAssertEqual([plain[0].width, plain[0].height], [bw, 7])
            XCTAssertEqual([rounded[0].width, rounded[0].height], [12, 8])
        }
        var s = EditorSettings()
        s.windowOverlap = 0
        XCTAssertEqual(OCDMethod.Config(s).cropMultiple, 1)
        s.windowOverlap = 1
        XCTAssertEqual(OCDMethod.Config(s).cropMultiple, 4)
    }

    /// An editor that records its windows and marks each frame it returns.
    final class Recorder: WindowEditing {
        var windows: [[Int]] = []
        func edit(frames: [Frame], masks: [Mask], isCancelled: @escaping @Sendable () -> Bool) throws -> [Frame] {
            windows.append(frames.map { Int($0.planes[0][0]) })
            return frames.map { var f = $0; f.planes[0][1] = 255; return f }
        }
    }

    /// The protocol's default: context and window edited as one, only the window's edits returned.
    func testDefaultContextEditReturnsTheWindowsFramesOnly() throws {
        let editor = Recorder()
        let context = (0..<2).map { stamped($0) }, window = (5..<8).map { stamped($0) }
        let out = try editor.edit(frames: window.map(\.0), masks: window.map(\.1),
                                  context: WindowContext(frames: context.map(\.0), masks: context.map(\.1)),
                                  isCancelled: { false })
        XCTAssertEqual(editor.windows, [[0, 1, 5, 6, 7]])
        XCTAssertEqual(out.map { Int($0.planes[0][0]) }, [5, 6, 7])
        XCTAssertEqual(out.map { $0.planes[0][1] }, [255, 255, 255])
    }

    // MARK: with the tiny model

    static let never: @Sendable () -> Bool = { false }

    /// The editor tests' moving square, each frame's top-left pixel (far outside the mask, so kept) set to its index.
    func movingWindow(_ count: Int) -> (frames: [Frame], masks: [Mask]) {
        var w = DiffusionEditorTests.window(frames: count)
        for i in 0..<count { w.frames[i].planes[0][0] = UInt8(i) }
        return w
    }

    /// The diffusion editor with two context frames: the window's own frames come back, in order, each the edit of
    /// its own input (its stamp and its background bytes), the context's edits are neither decoded nor returned.
    func testDiffusionEditorWithContextReturnsItsOwnFramesInOrder() throws {
        let pipe = try XCTUnwrap(DiffusionEditorTests.pipeline)
        let w = movingWindow(6)
        let s = DiffusionEditorTests.settings { $0.mode = .baseline; $0.steps = 4 }
        let editor = try DiffusionWindowEditor(pipeline: pipe, settings: s)
        let context = WindowContext(frames: Array(w.frames[0..<2]), masks: Array(w.masks[0..<2]))
        let own = Array(w.frames[2...]), ownMasks = Array(w.masks[2...])
        let out = try editor.edit(frames: own, masks: ownMasks, context: context, isCancelled: Self.never)
        XCTAssertEqual(out.count, 4)
        XCTAssertEqual(out.map { Int($0.planes[0][0]) }, [2, 3, 4, 5])
        XCTAssertEqual(editor.lastReport.contextFrames, 2)
        XCTAssertEqual(editor.lastCompositeMasks, ownMasks)
        for i in 0..<4 {
            let alpha = FeatherMask(mask: ownMasks[i], threshold: s.maskThreshold, feather: s.feather)
            var changed = 0
            for k in 0..<(own[i].width * own[i].height) {
                let (a, b) = (out[i].planes[0][(3 * k)..<(3 * k + 3)], own[i].planes[0][(3 * k)..<(3 * k + 3)])
                if alpha.alpha[k] == 0 { XCTAssertEqual(a, b, "frame \(i) pixel \(k) outside the mask") }
                else if a != b { changed += 1 }
            }
            XCTAssertGreaterThan(changed, 50, "frame \(i) was not edited")
        }
        // The context took part: the same window alone edits differently.
        let alone = try editor.edit(frames: own, masks: ownMasks, isCancelled: Self.never)
        XCTAssertEqual(editor.lastReport.contextFrames, 0)
        XCTAssertNotEqual(alone, out)
    }

    /// A session with window-overlap 2 over windows of 3: every frame comes out once, in order (no context frame's
    /// edit is emitted again), and each window is the editor's edit with the anchor and the previous window's last
    /// frame as context.
    func testSessionEmitsEachFrameOnceWithOverlap() throws {
        let w = movingWindow(9)
        var s = DiffusionEditorTests.settings { $0.mode = .baseline; $0.steps = 2 }
        s.windowOverlap = 2
        let session = EditorSession()
        var outputs: [Frame] = []
        for start in stride(from: 0, to: 9, by: 3) {
            let r = start..<(start + 3)
            let out = try session.edit(frames: Array(w.frames[r]), masks: Array(w.masks[r]), settings: s,
                                       isCancelled: Self.never)
            outputs += try XCTUnwrap(out.frames)
        }
        XCTAssertEqual(outputs.map { Int($0.planes[0][0]) }, Array(0..<9))
        let editor = try DiffusionWindowEditor(pipeline: try XCTUnwrap(DiffusionEditorTests.pipeline), settings: s)
        let last = try editor.edit(frames: Array(w.frames[6..<9]), masks: Array(w.masks[6..<9]),
                                   context: WindowContext(frames: [w.frames[0], w.frames[5]],
                                                          masks: [w.masks[0], w.masks[5]]),
                                   isCancelled: Self.never)
        XCTAssertEqual(Array(outputs[6..<9]), last)
        // After forgetContext the next window is a first window again: edited alone.
        session.forgetContext()
        let again = try session.edit(frames: Array(w.frames[6..<9]), masks: Array(w.masks[6..<9]), settings: s,
                                     isCancelled: Self.never)
        XCTAssertEqual(again.frames, try editor.edit(frames: Array(w.frames[6..<9]), masks: Array(w.masks[6..<9]),
                                                     isCancelled: Self.never))
    }
}
