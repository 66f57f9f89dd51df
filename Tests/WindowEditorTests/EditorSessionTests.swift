import Foundation
import XCTest
@testable import WindowEditor

/// Sessions and the process-wide model cache: one load per folder while anyone holds it, whatever the settings do;
/// every failure comes out as an `EditorFailure` of the right kind, naming what to fix.
final class EditorSessionTests: XCTestCase {
    let folder = Fixtures.tinyModel.path
    let frames = [Frame(format: .rgb, width: 64, height: 48, planes: [[UInt8](repeating: 100, count: 64 * 48 * 3)])]
    /// Nothing masked: the editor is made and returns the window without running the UNet.
    let emptyMasks = [Mask(width: 64, height: 48, pixels: [UInt8](repeating: 0, count: 64 * 48))]

    func settings(seed: UInt64 = 0, feather: Int = 8, prompt: String = "a blue ball") -> EditorSettings {
        var s = EditorSettings()
        s.modelPath = folder
        s.prompt = prompt
        s.seed = seed
        s.feather = feather
        s.processingSize = 64
        s.steps = 1
        return s
    }

    func testSettingChangesAndTwoSessionsShareOneLoad() throws {
        let before = ModelCache.loadCount
        let a = EditorSession(), b = EditorSession()
        for s in [settings(), settings(seed: 7), settings(seed: 7, feather: 2), settings(prompt: "a red cube")] {
            let out = try a.edit(frames: frames, masks: emptyMasks, settings: s, isCancelled: { false })
            XCTAssertEqual(out.frames, frames)
            XCTAssertNil(out.warning)
        }
        var other = settings()
        other.modelPath = folder + "/./"  // the same folder, spelled differently
        XCTAssertFalse(a.needsModel(folder))
        XCTAssertTrue(b.needsModel(folder))
        _ = try b.edit(frames: frames, masks: emptyMasks, settings: other, isCancelled: { false })
        XCTAssertEqual(ModelCache.loadCount - before, 1, "one load for both sessions and every settings change")
        // Once nobody holds the model, the cache lets it go: the next request loads it again.
        a.release()
        b.release()
        try a.hold(modelFolder: folder)
        XCTAssertEqual(ModelCache.loadCount - before, 2)
        XCTAssertFalse(a.needsModel(folder))
        XCTAssertTrue(a.needsModel(nil))
    }

    func testNoModelPassesThroughWithAWarningAndLoadsNothing() throws {
        let before = ModelCache.loadCount
        var s = settings()
        s.modelPath = nil
        let out = try EditorSession().edit(frames: frames, masks: emptyMasks, settings: s, isCancelled: { false })
        XCTAssertNil(out.frames)
        XCTAssertTrue(out.warning?.contains("no model") == true, "got \(out.warning ?? "nil")")
        XCTAssertEqual(ModelCache.loadCount, before)
    }

    func testFailuresByKind() throws {
        /// The EditorFailure `body` throws (nil if it throws nothing, or anything else).
        func failure(_ body: () throws -> Void) -> EditorFailure? {
            do { try body() } catch { return error as? EditorFailure }
            return nil
        }
        let missing = failure { try EditorSession().hold(modelFolder: "/nonexistent/sd") }
        XCTAssertEqual(missing?.kind, .modelNotFound)
        XCTAssertTrue(missing?.message.contains("/nonexistent/sd") == true, "\(String(describing: missing))")

        let broken = FileManager.default.temporaryDirectory.appendingPathComponent("ocdedit-broken-\(UUID())")
        try FileManager.default.createDirectory(at: broken.appendingPathComponent("tokenizer"),
                                                withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: broken) }
        try Data("not json".utf8).write(to: broken.appendingPathComponent("tokenizer/vocab.json"))
        let unreadable = failure { try EditorSession().hold(modelFolder: broken.path) }
        XCTAssertEqual(unreadable?.kind, .modelUnreadable)
        XCTAssertTrue(unreadable?.message.contains(broken.path) == true, "\(String(describing: unreadable))")

        var badSize = settings()
        badSize.processingSize = 100
        XCTAssertEqual(failure { try EditorSession.validate(badSize) }?.kind, .settings)
        var reatco = settings()
        reatco.mode = .reatco
        XCTAssertEqual(failure { try EditorSession.validate(reatco) }?.kind, .settings)
        var unset = reatco
        unset.modelPath = nil
        XCTAssertNil(failure { try EditorSession.validate(unset) }, "without a model no setting matters")

        let full = [Mask(width: 64, height: 48, pixels: [UInt8](repeating: 255, count: 64 * 48))]
        let session = EditorSession()
        let cancelled = failure {
            _ = try session.edit(frames: frames, masks: full, settings: settings(), isCancelled: { true })
        }
        XCTAssertEqual(cancelled?.kind, .cancelled)
        let mixed = failure {
            let small = Frame(format: .rgb, width: 32, height: 48, planes: [[UInt8](repeating: 1, count: 32 * 48 * 3)])
            _ = try session.edit(frames: frames + [small], masks: full + full, settings: settings(),
                                 isCancelled: { false })
        }
        XCTAssertEqual(mixed?.kind, .edit)
    }
}
