// `ocdedit edit` as a user runs it: the built binary (.build/release/ocdedit, or debug) as a subprocess on a generated
// 3-second 64×48 clip with a mask video and the tiny fixture model, checked with gst-discoverer-1.0 and by decoding.
import Foundation
import XCTest

final class EditCommandTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let tinyModel = root.appendingPathComponent("Tests/Fixtures/tiny-sd1").path

    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ocdedit-edit-\(getpid())-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: dir)
    }

    static var binary: String? {
        ["release", "debug"].map { root.appendingPathComponent(".build/\($0)/ocdedit").path }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `arguments` (the first is the program) with stdout and stderr in files, at most `timeout` seconds.
    func run(_ arguments: [String], timeout: Double = 300) throws -> Result {
        let out = dir.appendingPathComponent("stdout-\(UUID())"), err = dir.appendingPathComponent("stderr-\(UUID())")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: arguments[0])
        p.arguments = Array(arguments.dropFirst())
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = try FileHandle(forWritingTo: err)
        var environment = ProcessInfo.processInfo.environment
        environment["GST_REGISTRY"] = dir.appendingPathComponent("registry.bin").path
        p.environment = environment
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        if p.isRunning {
            p.terminate()
            p.waitUntilExit()
            XCTFail("\(arguments.joined(separator: " ")) did not end within \(timeout) s")
        }
        p.waitUntilExit()
        return Result(status: p.terminationStatus,
                      stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
    }

    func gstLaunch(_ description: String) throws {
        let r = try run(["/usr/bin/env", "gst-launch-1.0", "-q"] + description.split(separator: " ").map(String.init))
        XCTAssertEqual(r.status, 0, "gst-launch-1.0 \(description): \(r.stdout) \(r.stderr)")
    }

    /// A 3-second 64×48 clip at 25 fps (75 frames) and a mask video of a moving ball, both VP8/WebM.
    func makeClip() throws -> (video: String, mask: String) {
        let video = dir.appendingPathComponent("in.webm").path, mask = dir.appendingPathComponent("mask.webm").path
        for (pattern, path) in [("smpte", video), ("ball", mask)] {
            try gstLaunch("videotestsrc num-buffers=75 pattern=\(pattern) "
                          + "! video/x-raw,width=64,height=48,framerate=25/1 ! videoconvert ! vp8enc deadline=1 "
                          + "! webmmux ! filesink location=\(path)")
        }
        return (video, mask)
    }

    /// A 3-second 64×48 clip at 25 fps with a 3-second 48 kHz sine in Vorbis, in WebM.
    func makeClipWithAudio() throws -> String {
        let path = dir.appendingPathComponent("with-audio.webm").path
        try gstLaunch("videotestsrc num-buffers=75 ! video/x-raw,width=64,height=48,framerate=25/1 ! videoconvert "
                      + "! vp8enc deadline=1 ! webmmux name=m ! filesink location=\(path) audiotestsrc "
                      + "num-buffers=150 samplesperbuffer=960 ! audio/x-raw,rate=48000 ! audioconvert ! vorbisenc ! m.")
        return path
    }

    /// The stream kinds gst-discoverer-1.0 lists in `path` ("video: VP8", "audio: Opus", …).
    func streams(_ path: String) throws -> [String] {
        try run(["/usr/bin/env", "gst-discoverer-1.0", path]).stdout.split(separator: "\n").compactMap { line in
            let text = line.trimmingCharacters(in: .whitespaces)
            guard let kind = ["video", "audio"].first(where: { text.hasPrefix($0 + " #") }),
                  let colon = text.firstIndex(of: ":") else { return nil }
            return "\(kind): " + text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
    }

    func editArguments(_ input: String, _ output: String, model: String = tinyModel) throws -> [String] {
        let binary = try XCTUnwrap(Self.binary, "ocdedit not built (swift build -c release)")
        return [binary, "edit", input, "-o", output, "--prompt", "a blue ball", "--model", model,
                "--steps", "2", "--set", "window-size=8"]
    }

    /// gst-discoverer-1.0's duration of `path` in seconds.
    func duration(_ path: String) throws -> Double? {
        let r = try run(["/usr/bin/env", "gst-discoverer-1.0", path])
        guard let line = r.stdout.split(separator: "\n").first(where: { $0.contains("Duration:") }) else {
            return nil
        }
        let parts = line.split(separator: " ").last!.split(separator: ":").compactMap { Double($0) }
        guard parts.count == 3 else { return nil }
        return parts[0] * 3600 + parts[1] * 60 + parts[2]
    }

    /// Frames in `path`, counted by decoding it into a fakesink that reports every buffer.
    func decodedFrames(_ path: String) throws -> Int {
        let r = try run(["/usr/bin/env", "gst-launch-1.0", "-v", "filesrc", "location=\(path)", "!", "decodebin",
                         "!", "fakesink", "silent=false"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.stdout.components(separatedBy: "last-message = chain").count - 1
    }

    /// Files in the output folder other than the test's own.
    func leftovers(_ folder: URL, besides: Set<String>) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { !besides.contains($0) }.sorted()
    }

    /// Input and output have the same frames and duration (gst-discoverer-1.0), in WebM and Matroska; without a
    /// terminal, progress is one plain line per window, ending at 75/75.
    func testEditKeepsFrameCountAndDuration() throws {
        let (video, mask) = try makeClip()
        let inputDuration = try XCTUnwrap(try duration(video))
        XCTAssertEqual(inputDuration, 3, accuracy: 0.001)
        XCTAssertEqual(try decodedFrames(video), 75)
        for name in ["out.webm", "out.mkv"] {
            let out = dir.appendingPathComponent("edited").appendingPathComponent(name).path
            let r = try run(try editArguments(video, out) + ["--mask", mask])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(try duration(out), inputDuration, "\(name): duration")
            XCTAssertEqual(try decodedFrames(out), 75, "\(name): frames")
            let lines = r.stderr.split(separator: "\n").filter { $0.contains("window") }
            XCTAssertEqual(lines.count, 10, r.stderr)
            XCTAssertTrue(lines.first?.hasPrefix("ocdedit: window 1/10 done: frames 8/75 (10%)") ?? false, r.stderr)
            XCTAssertTrue(lines.last?.hasPrefix("ocdedit: window 10/10 done: frames 75/75 (100%)") ?? false,
                          r.stderr)
            XCTAssertFalse(r.stderr.contains("\r"), "a terminal bar without a terminal")
            XCTAssertTrue(r.stdout.contains("wrote \(out) (75 frames, 10 windows"), r.stdout)
        }
        let folder = dir.appendingPathComponent("edited")
        XCTAssertEqual(try leftovers(folder, besides: []), ["out.mkv", "out.webm"])
    }

    /// A file's audio is re-encoded into the output (Opus in WebM, MP3 in MP4) with the input's duration, also when
    /// a window holds more than a second of video (the audio waits in an unbounded queue, nothing stalls);
    /// --no-audio leaves it out; PNG output says it drops it.
    func testAudioIsPassedThrough() throws {
        let video = try makeClipWithAudio()
        XCTAssertEqual(try streams(video), ["video: VP8", "audio: Vorbis"])
        let inputDuration = try XCTUnwrap(try duration(video))
        let cases: [(output: String, extra: [String], streams: [String])] = [
            ("a.webm", ["--set", "window-size=64"], ["video: VP8", "audio: Opus"]),
            ("a.mp4", [], ["video: H.264 (High Profile)", "audio: MPEG-1 Layer 3 (MP3)"]),
            ("silent.mkv", ["--no-audio"], ["video: VP8"]),
        ]
        for c in cases {
            let out = dir.appendingPathComponent(c.output).path
            let r = try run(try editArguments(video, out) + c.extra)
            XCTAssertEqual(r.status, 0, "\(c.output): \(r.stderr)")
            XCTAssertEqual(try streams(out), c.streams, c.output)
            // MP3 frames round the audio up to 1152 samples (and the encoder's delay): within 50 ms.
            XCTAssertEqual(try XCTUnwrap(try duration(out)), inputDuration, accuracy: 0.05, c.output)
        }
        XCTAssertEqual(try decodedFrames(dir.appendingPathComponent("a.webm").path), 75)
        let r = try run(try editArguments(video, dir.appendingPathComponent("png/f-%03d.png").path))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("PNG frames carry no audio: the input's Vorbis is not written"), r.stderr)
    }

    /// Under a pseudo-terminal (`script`), one redrawn line: a bar reaching 100 %, frames, windows, s/window, ETA.
    func testProgressBarOnATerminal() throws {
        let (video, mask) = try makeClip()
        let out = dir.appendingPathComponent("tty.webm").path
        let command = try (editArguments(video, out) + ["--mask", mask]).map { "'\($0)'" }.joined(separator: " ")
        let r = try run(["/usr/bin/script", "-qec", command, "/dev/null"])
        XCTAssertEqual(r.status, 0, r.stdout)
        XCTAssertTrue(r.stdout.contains("\r\u{1B}[2K[#"), "no bar redrawn in place: \(r.stdout)")
        XCTAssertTrue(r.stdout.contains("] 100%  frames 75/75  windows 10/10"), r.stdout)
        XCTAssertTrue(r.stdout.contains(" s/window  ETA "), r.stdout)
        XCTAssertFalse(r.stdout.contains("ocdedit: window 1/10 done"), "plain lines on a terminal")
        XCTAssertEqual(try decodedFrames(out), 75)
    }

    /// A corrupt model (a truncated safetensors file) fails before any frame: non-zero exit with the bus error's
    /// text, no output and no temporary file; a file already under the output name keeps its bytes.
    func testCorruptModelLeavesNoOutput() throws {
        let (video, mask) = try makeClip()
        let model = dir.appendingPathComponent("broken-model")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: Self.tinyModel), to: model)
        let weights = model.appendingPathComponent("unet/diffusion_pytorch_model.safetensors")
        try FileHandle(forWritingTo: weights).truncate(atOffset: 1000)
        let folder = dir.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let fresh = folder.appendingPathComponent("fresh.webm").path
        var r = try run(try editArguments(video, fresh, model: model.path) + ["--mask", mask])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("error: unet: "), r.stderr)
        XCTAssertTrue(r.stderr.contains("broken-model/unet/diffusion_pytorch_model.safetensors"), r.stderr)
        XCTAssertEqual(try leftovers(folder, besides: []), [])

        let existing = folder.appendingPathComponent("existing.webm")
        try Data("old bytes".utf8).write(to: existing)
        r = try run(try editArguments(video, existing.path, model: model.path))
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(try Data(contentsOf: existing), Data("old bytes".utf8))
        XCTAssertEqual(try leftovers(folder, besides: []), ["existing.webm"])
    }

    /// An edit slow enough to act on in mid-stream (20 steps a window), started in the background and returned once
    /// its second window is done (or it ended, or 120 s passed), with its stderr so far.
    func startSlowEdit(_ input: String, _ output: String) throws -> (process: Process, log: () -> String) {
        let err = dir.appendingPathComponent("stderr-\(UUID())")
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let arguments = try editArguments(input, output) + ["--steps", "20", "--strength", "1"]
        let p = Process()
        p.executableURL = URL(fileURLWithPath: arguments[0])
        p.arguments = Array(arguments.dropFirst())
        p.standardOutput = FileHandle.nullDevice
        p.standardError = try FileHandle(forWritingTo: err)
        try p.run()
        let log = { (try? String(contentsOf: err, encoding: .utf8)) ?? "" }
        let deadline = Date().addingTimeInterval(120)
        while p.isRunning && Date() < deadline && !log().contains("window 2/10 done") { usleep(10_000) }
        return (p, log)
    }

    /// Ctrl-C (SIGINT) in mid-stream, after windows were already encoded: exit status 130, and neither the output
    /// nor its temporary file is left, for a video file and for PNG frames.
    func testInterruptInMidStreamLeavesNoOutput() throws {
        let (video, _) = try makeClip()
        let folder = dir.appendingPathComponent("out")
        for output in ["clip.webm", "png/frame-%03d.png"] {
            let edit = try startSlowEdit(video, folder.appendingPathComponent(output).path)
            XCTAssertTrue(edit.process.isRunning, "\(output): ended before it could be interrupted: \(edit.log())")
            kill(edit.process.processIdentifier, SIGINT)
            edit.process.waitUntilExit()
            let log = edit.log()
            XCTAssertEqual(edit.process.terminationStatus, 130, log)
            XCTAssertTrue(log.contains("interrupted; no output written"), log)
        }
        XCTAssertEqual(try leftovers(folder, besides: ["png"]), [])
        XCTAssertEqual(try leftovers(folder.appendingPathComponent("png"), besides: []), [])
    }

    /// A pipeline error that is not the model's (a mask file no demuxer knows): exit status 1 with the bus error's
    /// text, no output.
    func testUnreadableMaskFailsWithTheBusError() throws {
        let (video, _) = try makeClip()
        let mask = dir.appendingPathComponent("mask.txt")
        try Data("not a video".utf8).write(to: mask)
        let folder = dir.appendingPathComponent("out")
        let r = try run(try editArguments(video, folder.appendingPathComponent("x.webm").path) + ["--mask", mask.path])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("error: Could not determine type of stream"), r.stderr)
        XCTAssertEqual(try leftovers(folder, besides: []), [])
    }

    /// A write error in mid-stream, after windows were written (the temporary folder of PNG frames disappears, as
    /// on a failing disk): exit status 1 with the sink's error, and no frame under the output pattern.
    func testWriteErrorInMidStreamLeavesNoOutput() throws {
        let (video, _) = try makeClip()
        let folder = dir.appendingPathComponent("out")
        let edit = try startSlowEdit(video, folder.appendingPathComponent("frame-%03d.png").path)
        XCTAssertTrue(edit.process.isRunning, "ended before the write error: \(edit.log())")
        let staging = try leftovers(folder, besides: [])
        XCTAssertEqual(staging.count, 1, "one temporary folder: \(staging)")
        XCTAssertTrue(staging.first?.hasPrefix(".ocdedit-") ?? false, "\(staging)")
        for name in staging { try FileManager.default.removeItem(at: folder.appendingPathComponent(name)) }
        edit.process.waitUntilExit()
        let log = edit.log()
        XCTAssertEqual(edit.process.terminationStatus, 1, log)
        XCTAssertTrue(log.contains("error: "), log)
        XCTAssertEqual(try leftovers(folder, besides: []), [])
    }
}
