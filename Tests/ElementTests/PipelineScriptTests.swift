// Pipelines/ runs headless on short generated input with the tiny model (file-to-file.sh and side-by-side.sh are
// run by ElementLifetimeTests): each script exits 0 and leaves what it says.
import Foundation
import XCTest

final class PipelineScriptTests: XCTestCase {
    var root: URL { TestRepository.root }
    var tinyModel: String { TestRepository.tinyModel }

    /// Runs Pipelines/`name` with `arguments` and `environment` added to this process's (GST_PLUGIN_PATH and
    /// GST_REGISTRY of GStreamerSetup): exit status, stdout, seconds taken.
    func run(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws
        -> (status: Int32, output: String, seconds: Double) {
        try XCTSkipUnless(GStreamerSetup.ready, "plugin libgstocdedit.so not built (run `make build`)")
        let script = Process()
        script.executableURL = root.appendingPathComponent("Pipelines/\(name)")
        script.arguments = arguments
        script.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe()
        script.standardOutput = output
        let start = Date()
        try script.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        script.waitUntilExit()
        return (script.terminationStatus, text, Date().timeIntervalSince(start))
    }

    func fileSize(_ url: URL) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.intValue ?? -1
    }

    /// mask-from-png.sh: the demo clip encoded to WebM, its 16 PNG masks on the mask pad, edited to WebM with one
    /// `progress` line per window of 8.
    func testMaskFromPNGScript() throws {
        let dir = try temporaryDirectory()
        let (status, text, _) = try run("mask-from-png.sh", [dir.path, "steps=2", "processing-size=64"],
                                        environment: ["MODEL": tinyModel])
        XCTAssertEqual(status, 0, text)
        let windows = text.split(separator: "\n").filter { $0.hasPrefix("window progress:") }
        XCTAssertEqual(windows.count, 2, text)
        XCTAssertTrue(windows.last?.contains("current=(gint64)16, total=(gint64)16") ?? false, text)
        XCTAssertTrue(text.contains("16 masks"), text)
        XCTAssertGreaterThan(fileSize(dir.appendingPathComponent("edited.webm")), 1000)
    }

    /// live-preview.sh headless (fakesink synced to the clock): 75 frames of a live 25 fps test source through a
    /// model far too slow (200 steps a window) in about their 3 s; every frame comes out (the last progress line
    /// counts 75), the late windows are printed from their QoS messages, and the run ends with EOS.
    func testLivePreviewScriptHeadless() throws {
        let (status, text, seconds) = try run(
            "live-preview.sh", ["steps=200", "processing-size=64"],
            environment: ["MODEL": tinyModel, "HEADLESS": "1", "FRAMES": "75", "WIDTH": "64", "HEIGHT": "48"])
        XCTAssertEqual(status, 0, text)
        let lines = text.split(separator: "\n")
        XCTAssertTrue(lines.last { $0.hasPrefix("window progress:") }?.contains("current=(gint64)75") ?? false, text)
        XCTAssertGreaterThan(lines.filter { $0.hasPrefix("late window:") }.count, 0, text)
        XCTAssertTrue(text.contains("EOS"), text)
        XCTAssertLessThan(seconds, 3 + 15, "model load, then 3 s of video at the source's rate")
    }

    /// preview-mask.sh: 25 tinted frames as PNG (no model runs).
    func testPreviewMaskScript() throws {
        let dir = try temporaryDirectory()
        let (status, text, _) = try run("preview-mask.sh", [dir.path])
        XCTAssertEqual(status, 0, text)
        let pictures = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("frame-") }
        XCTAssertEqual(pictures.count, 25)
    }
}
