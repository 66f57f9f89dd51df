// The element's lifetime rules: a finished window leaves at once (tees with default queues finish), the model loads
// at READY→PAUSED and fails that state change by error domain, one load serves every setting change and every element
// naming the folder, and the README's property table is the element's.
import Foundation
import XCTest
import CGStreamer
import CGstApp

final class ElementLifetimeTests: XCTestCase {
    let w = 64, h = 48
    var root: URL { TestRepository.root }
    var tinyModel: String { TestRepository.tinyModel }

    func fileSize(_ url: URL) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.intValue ?? -1
    }

    /// The pipeline of issue 11: a tee feeds ocdedit (window-size=8) and a filesink through default queues, video and
    /// mask alike. The sibling queues fill while the element holds its first window; the pipeline only prerolls if the
    /// element pushes that window as soon as it is edited, not when more input comes. All 16 frames reach both sinks.
    func testTeeWithDefaultQueuesGetsEveryFrameOnBothBranches() throws {
        let dir = try temporaryDirectory()
        let (W, H, count) = (128, 96, 16)
        let p = try LaunchedPipeline("""
            videotestsrc num-buffers=\(count) ! video/x-raw,format=RGB,width=\(W),height=\(H),framerate=8/1 ! \
            tee name=v \
            v. ! queue ! ocdedit name=e window-size=8 model=\(tinyModel) prompt="a blue ball" steps=2 \
            processing-size=64 ! filesink location=\(dir.path)/edited.rgb \
            v. ! queue ! filesink location=\(dir.path)/input.rgb \
            videotestsrc pattern=ball num-buffers=\(count) ! \
            video/x-raw,format=GRAY8,width=\(W),height=\(H),framerate=8/1 ! tee name=m \
            m. ! queue ! e.mask \
            m. ! queue ! filesink location=\(dir.path)/mask.gray
            """)
        let (eos, error) = p.runToEnd(timeout: 300)
        XCTAssertNil(error?.message)
        XCTAssertTrue(eos, "the tee pipeline did not finish")
        XCTAssertEqual(fileSize(dir.appendingPathComponent("edited.rgb")), count * W * H * 3)
        XCTAssertEqual(fileSize(dir.appendingPathComponent("input.rgb")), count * W * H * 3)
        XCTAssertEqual(fileSize(dir.appendingPathComponent("mask.gray")), count * W * H)
        let edited = try Data(contentsOf: dir.appendingPathComponent("edited.rgb"))
        let input = try Data(contentsOf: dir.appendingPathComponent("input.rgb"))
        XCTAssertNotEqual(edited, input, "nothing was edited: the windows took no time and proved nothing")
    }

    /// Pipelines/file-to-file.sh runs headless: the demo clip encoded to WebM, edited file to file, the model load's
    /// PROGRESS pair and one `progress` message per window (16 frames in windows of 8) in its output.
    func testFileToFileScript() throws {
        try XCTSkipUnless(GStreamerSetup.ready, "plugin libgstocdedit.so not built (run `make build`)")
        let dir = try temporaryDirectory()
        let script = Process()
        script.executableURL = root.appendingPathComponent("Pipelines/file-to-file.sh")
        script.arguments = [dir.path, "steps=2", "processing-size=64"]
        var environment = ProcessInfo.processInfo.environment // GST_PLUGIN_PATH/GST_REGISTRY of GStreamerSetup
        environment["MODEL"] = tinyModel
        script.environment = environment
        let output = Pipe()
        script.standardOutput = output
        try script.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        script.waitUntilExit()
        XCTAssertEqual(script.terminationStatus, 0, text)
        let lines = text.split(separator: "\n")
        XCTAssertEqual(lines.filter { $0.hasPrefix("Progress: (loading)") }.count, 2, text)
        let windows = lines.filter { $0.hasPrefix("window progress:") }
        XCTAssertEqual(windows.count, 2, text)
        XCTAssertTrue(windows.last?.contains("current=(gint64)16, total=(gint64)16") ?? false, text)
        XCTAssertGreaterThan(fileSize(dir.appendingPathComponent("edited.webm")), 1000)
    }

    /// Pipelines/side-by-side.sh (tee → ocdedit → compositor ← queue ← tee) runs headless and writes one picture per
    /// frame, input and edit side by side.
    func testSideBySideScript() throws {
        try XCTSkipUnless(GStreamerSetup.ready, "plugin libgstocdedit.so not built (run `make build`)")
        // A sanitized plugin (`make sanitize`) loads only into a sanitized process, not into the script's gst-launch.
        try XCTSkipIf(ProcessInfo.processInfo.environment["OCDEDIT_PLUGIN_DIR"] != nil,
                      "OCDEDIT_PLUGIN_DIR set (sanitized plugin): gst-launch-1.0 could not load it")
        let dir = try temporaryDirectory()
        let script = Process()
        script.executableURL = root.appendingPathComponent("Pipelines/side-by-side.sh")
        script.arguments = [dir.path, "steps=2", "processing-size=64"]
        var environment = ProcessInfo.processInfo.environment // GST_PLUGIN_PATH/GST_REGISTRY of GStreamerSetup
        environment["MODEL"] = tinyModel
        script.environment = environment
        try script.run()
        script.waitUntilExit()
        XCTAssertEqual(script.terminationStatus, 0)
        let pictures = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("side-") }
        XCTAssertEqual(pictures.count, 16)
        // PNG: the IHDR chunk's width and height are big-endian at bytes 16…23.
        let png = try Data(contentsOf: dir.appendingPathComponent("side-000.png"))
        let size = (16..<24).map { Int(png[$0]) }
        XCTAssertEqual(size[0] << 24 | size[1] << 16 | size[2] << 8 | size[3], 2 * 128, "input and edit side by side")
        XCTAssertEqual(size[4] << 24 | size[5] << 16 | size[6] << 8 | size[7], 128)
    }

    /// A model folder that does not exist fails READY→PAUSED with RESOURCE/NOT_FOUND naming the folder; no frame
    /// reaches the sink.
    func testMissingModelFailsTheStateChangeWithNotFound() throws {
        let p = try LaunchedPipeline(
            "videotestsrc num-buffers=4 ! ocdedit model=/nonexistent/sd prompt=x ! fakesink name=sink")
        XCTAssertEqual(p.setState(GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE)
        let error = p.error(timeout: 5)
        XCTAssertEqual(error?.isResourceError, true)
        XCTAssertEqual(error?.code, Int32(GST_RESOURCE_ERROR_NOT_FOUND.rawValue))
        XCTAssertTrue(error?.message.contains("/nonexistent/sd") == true, "got: \(error?.message ?? "nil")")
        let bin = UnsafeMutableRawPointer(p.pipeline).assumingMemoryBound(to: GstBin.self)
        let sink = gst_bin_get_by_name(bin, "sink")!
        defer { gst_object_unref(sink) }
        var sample = GValue()
        g_value_init(&sample, gst_sample_get_type())
        let object = UnsafeMutableRawPointer(sink).assumingMemoryBound(to: GObject.self)
        g_object_get_property(object, "last-sample", &sample)
        XCTAssertNil(g_value_get_boxed(&sample), "a frame reached the sink")
        g_value_unset(&sample)
    }

    /// A folder with a truncated UNet fails READY→PAUSED with RESOURCE/READ naming the folder.
    func testCorruptModelFailsTheStateChangeWithRead() throws {
        let dir = try temporaryDirectory()
        let fm = FileManager.default
        let tiny = URL(fileURLWithPath: tinyModel)
        for part in try fm.contentsOfDirectory(atPath: tiny.path) where part != "unet" {
            try fm.createSymbolicLink(at: dir.appendingPathComponent(part),
                                      withDestinationURL: tiny.appendingPathComponent(part))
        }
        let unet = dir.appendingPathComponent("unet")
        try fm.createDirectory(at: unet, withIntermediateDirectories: true)
        try fm.createSymbolicLink(at: unet.appendingPathComponent("config.json"),
                                  withDestinationURL: tiny.appendingPathComponent("unet/config.json"))
        let weights = try Data(contentsOf: tiny.appendingPathComponent("unet/diffusion_pytorch_model.safetensors"))
        try weights.prefix(1000).write(to: unet.appendingPathComponent("diffusion_pytorch_model.safetensors"))
        let p = try LaunchedPipeline("videotestsrc num-buffers=4 ! ocdedit model=\(dir.path) prompt=x ! fakesink")
        XCTAssertEqual(p.setState(GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE)
        let error = p.error(timeout: 5)
        XCTAssertEqual(error?.isResourceError, true)
        XCTAssertEqual(error?.code, Int32(GST_RESOURCE_ERROR_READ.rawValue))
        XCTAssertTrue(error?.message.contains(dir.path) == true, "got: \(error?.message ?? "nil")")
    }

    /// Settings the editor cannot run fail READY→PAUSED with RESOURCE/SETTINGS naming the setting: a processing-size
    /// GObject's range lets through but the table refuses, and mode=reatco without its regions.
    func testBadSettingsFailTheStateChangeWithSettings() throws {
        for (setting, named) in [("processing-size=100", "processing-size"), ("mode=reatco", "reatco")] {
            let p = try LaunchedPipeline(
                "videotestsrc num-buffers=4 ! ocdedit model=\(tinyModel) prompt=x \(setting) ! fakesink")
            XCTAssertEqual(p.setState(GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE, setting)
            let error = p.error(timeout: 5)
            XCTAssertEqual(error?.isResourceError, true, setting)
            XCTAssertEqual(error?.code, Int32(GST_RESOURCE_ERROR_SETTINGS.rawValue), setting)
            XCTAssertTrue(error?.message.contains(named) == true, "\(setting): got \(error?.message ?? "nil")")
        }
    }

    /// A patterned frame (the VAE has something to encode).
    func pattern() -> [UInt8] {
        var rgb = [UInt8](repeating: 0, count: w * h * 3)
        for k in 0..<(w * h) {
            rgb[3 * k] = UInt8((k % w) * 4 % 256)
            rgb[3 * k + 1] = UInt8((k / w) * 5 % 256)
            rgb[3 * k + 2] = 90
        }
        return rgb
    }

    /// Pushes one window of two identical frames and pulls its two output frames.
    func window(_ p: Pipeline, _ k: Int) -> [[UInt8]] {
        for i in 0..<2 { p.pushVideo(pattern(), pts: UInt(2 * k + i) * frameNs) }
        var out: [[UInt8]] = []
        for _ in 0..<2 {
            guard let sample = gst_app_sink_try_pull_sample(p.sink, 120_000_000_000) else { break }
            let b = gst_sample_get_buffer(sample)!
            var map = GstMapInfo()
            gst_buffer_map(b, &map, GST_MAP_READ)
            out.append(Array(UnsafeBufferPointer(start: map.data, count: Int(map.size))))
            gst_buffer_unmap(b, &map)
            gst_sample_unref(sample)
        }
        return out
    }

    /// seed, feather and prompt changed while PLAYING reach the next window (the last window differs from the first
    /// on the same input) without loading the model again: one PROGRESS loading start in the whole run.
    func testSettingChangesWhilePlayingDoNotReloadTheModel() throws {
        let p = try Pipeline("""
            appsrc name=video format=time caps=\(rgbCaps(w, h)) ! ocdedit name=e window-size=2 model=\(tinyModel) \
            prompt="a blue ball" source-prompt="a red ball" steps=2 processing-size=64 ! appsink name=sink sync=false
            """)
        p.play()
        let first = window(p, 0)
        p.set("seed", uint64: 7)
        XCTAssertEqual(window(p, 1).count, 2)
        p.set("feather", int: 2)
        XCTAssertEqual(window(p, 2).count, 2)
        p.set("prompt", string: "a green cube")
        let last = window(p, 3)
        p.endVideo()
        let (rest, eos) = p.collect()
        XCTAssertTrue(eos)
        XCTAssertEqual(rest.count, 0)
        XCTAssertEqual(first.count, 2)
        XCTAssertEqual(last.count, 2)
        XCTAssertNotEqual(first, last, "the changed settings did not reach the editor")
        let messages = p.pendingMessages(GstMessageType(GST_MESSAGE_PROGRESS.rawValue | GST_MESSAGE_ERROR.rawValue))
        defer { messages.forEach { gst_message_unref($0) } }
        XCTAssertFalse(messages.contains { $0.pointee.type == GST_MESSAGE_ERROR }, "error on the bus")
        XCTAssertEqual(modelLoadStarts(messages), 1, "the model did not load exactly once")
    }

    /// A value refused while PLAYING stops the stream at the next window with RESOURCE/SETTINGS naming it; the window
    /// before it is edited as usual.
    func testRefusedValueWhilePlayingIsASettingsError() throws {
        let p = try videoPipeline()
        p.play()
        XCTAssertEqual(window(p, 0).count, 2)
        p.set("processing-size", int: 100)
        for i in 2..<4 { p.pushVideo(pattern(), pts: UInt(i) * frameNs) }
        let messages = p.pendingMessagesWithin(GST_MESSAGE_ERROR, timeout: 60)
        defer { messages.forEach { gst_message_unref($0) } }
        let error = messages.first.map(LaunchedPipeline.parseError)
        XCTAssertEqual(error?.isResourceError, true)
        XCTAssertEqual(error?.code, Int32(GST_RESOURCE_ERROR_SETTINGS.rawValue))
        XCTAssertTrue(error?.message.contains("processing-size") == true, "got: \(error?.message ?? "nil")")
    }

    /// Two elements naming one folder (spelled differently) share one load.
    func testTwoElementsShareOneModelLoad() throws {
        let p = try Pipeline("""
            appsrc name=video format=time caps=\(rgbCaps(w, h)) ! \
            ocdedit name=e window-size=2 model=\(tinyModel) prompt="a blue ball" steps=1 processing-size=64 ! \
            ocdedit window-size=2 model=\(tinyModel)/./ prompt="a red ball" steps=1 processing-size=64 ! \
            appsink name=sink sync=false
            """)
        p.play()
        for i in 0..<2 { p.pushVideo(pattern(), pts: UInt(i) * frameNs) }
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 120)
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.count, 2)
        let messages = p.pendingMessages(GST_MESSAGE_PROGRESS)
        defer { messages.forEach { gst_message_unref($0) } }
        XCTAssertEqual(modelLoadStarts(messages), 1)
    }

    /// The `ocdedit` debug category logs property changes, the model load and each window dispatched, finished (with
    /// its edit time) and pushed.
    func testDebugCategoryLogsPropertiesLoadsAndWindows() throws {
        let p = try videoPipeline()
        gst_debug_add_log_function(captureOCDEditLog, nil, nil)
        gst_debug_set_threshold_for_name("ocdedit", GST_LEVEL_DEBUG)
        defer {
            _ = gst_debug_remove_log_function(captureOCDEditLog)
            gst_debug_set_threshold_for_name("ocdedit", GST_LEVEL_NONE)
        }
        capturedLog.reset()
        p.set("feather", int: 3)
        p.play()
        for i in 0..<2 { p.pushVideo(pattern(), pts: UInt(i) * frameNs) }
        p.endVideo()
        XCTAssertEqual(p.collect(timeout: 120).frames.count, 2)
        let lines = capturedLog.lines
        for expected in ["property feather = 3", "loading model folder \(tinyModel)", "loaded",
                         "window 0 dispatched: 2 frames", "window 0 finished in", "window 0 pushed"] {
            XCTAssertTrue(lines.contains { $0.contains(expected) }, "no log line with '\(expected)' in \(lines)")
        }
    }

    func videoPipeline() throws -> Pipeline {
        try Pipeline("""
            appsrc name=video format=time caps=\(rgbCaps(w, h)) ! ocdedit name=e window-size=2 model=\(tinyModel) \
            prompt="a blue ball" steps=1 processing-size=64 ! appsink name=sink sync=false
            """)
    }

    /// The README's property table (### Properties) is exactly what the element registers: name, type and range,
    /// default and blurb, in registration order. On a mismatch the expected table is printed to paste in.
    func testReadmePropertyTableIsTheElementsTable() throws {
        try XCTSkipUnless(GStreamerSetup.ready, "plugin libgstocdedit.so not built (run `make build`)")
        let expected = elementPropertyRows()
        XCTAssertGreaterThan(expected.count, 20)
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let lines = readme.components(separatedBy: "\n")
        guard let start = lines.firstIndex(of: "### Properties") else { return XCTFail("README has no ### Properties") }
        let section = lines[(start + 1)...].prefix { !$0.hasPrefix("#") }
        let rows = section.filter { $0.hasPrefix("| `") }
        XCTAssertEqual(rows, expected, "README property table; expected:\n" + expected.joined(separator: "\n"))
    }
}

/// Lines the `ocdedit` debug category logged while a test listened.
final class CapturedLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    var lines: [String] { lock.withLock { stored } }
    func reset() { lock.withLock { stored = [] } }
    func append(_ line: String) { lock.withLock { stored.append(line) } }
}

let capturedLog = CapturedLog()

let captureOCDEditLog: GstLogFunction = { category, _, _, _, _, _, message, _ in
    guard let category, let name = gst_debug_category_get_name(category), String(cString: name) == "ocdedit",
          let message, let text = gst_debug_message_get(message) else { return }
    capturedLog.append(String(cString: text))
}

/// The element's own properties as README table rows: | `name` | type range | default | blurb |.
func elementPropertyRows() -> [String] {
    // GstElementFactory and GstPluginFeature import as opaque pointers.
    let factory = gst_element_factory_find("ocdedit")!
    defer { gst_object_unref(UnsafeMutableRawPointer(factory)) }
    let feature = gst_plugin_feature_load(factory)!
    defer { gst_object_unref(UnsafeMutableRawPointer(feature)) }
    let type = gst_element_factory_get_element_type(feature)
    let klass = g_type_class_ref(type)!
    defer { g_type_class_unref(klass) }
    var count: guint = 0
    let specs = g_object_class_list_properties(klass.assumingMemoryBound(to: GObjectClass.self), &count)!
    defer { g_free(specs) }
    func number(_ v: Double) -> String { v == v.rounded() && abs(v) < 1e15 ? "\(Int(v))" : "\(v)" }
    var rows: [(id: guint, row: String)] = []
    for i in 0..<Int(count) {
        let spec = specs[i]!
        guard spec.pointee.owner_type == type else { continue }
        let raw = UnsafeMutableRawPointer(spec)
        let valueType = spec.pointee.value_type
        let kind: String, defaultText: String
        switch valueType {
        case GType(6 << 2):
            let s = raw.assumingMemoryBound(to: GParamSpecInt.self).pointee
            (kind, defaultText) = ("int \(s.minimum)…\(s.maximum)", "\(s.default_value)")
        case GType(11 << 2):
            let s = raw.assumingMemoryBound(to: GParamSpecUInt64.self).pointee
            (kind, defaultText) = ("uint64 \(s.minimum)…\(s.maximum)", "\(s.default_value)")
        case GType(15 << 2):
            let s = raw.assumingMemoryBound(to: GParamSpecDouble.self).pointee
            (kind, defaultText) = ("double \(number(s.minimum))…\(number(s.maximum))", number(s.default_value))
        case GType(5 << 2):
            let s = raw.assumingMemoryBound(to: GParamSpecBoolean.self).pointee
            (kind, defaultText) = ("bool", s.default_value != 0 ? "true" : "false")
        case GType(16 << 2):
            let s = raw.assumingMemoryBound(to: GParamSpecString.self).pointee
            (kind, defaultText) = ("string", s.default_value.map { "\"\(String(cString: $0))\"" } ?? "none")
        default:
            precondition(g_type_fundamental(valueType) == GType(12 << 2), "unexpected property type")
            let s = raw.assumingMemoryBound(to: GParamSpecEnum.self).pointee
            let enumClass = s.enum_class!.pointee
            let nicks = (0..<Int(enumClass.n_values)).map { String(cString: enumClass.values[$0].value_nick) }
            (kind, defaultText) = ("enum " + nicks.joined(separator: ", "),
                                   String(cString: g_enum_get_value(s.enum_class, s.default_value)!.pointee.value_nick))
        }
        let name = String(cString: spec.pointee.name)
        let blurb = String(cString: g_param_spec_get_blurb(spec))
        rows.append((spec.pointee.param_id, "| `\(name)` | \(kind) | \(defaultText) | \(blurb) |"))
    }
    return rows.sorted { $0.id < $1.id }.map(\.row)
}
