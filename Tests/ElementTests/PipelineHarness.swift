// Drives ocdedit inside real pipelines: appsrc (video, optional mask) -> ocdedit -> appsink.
import Foundation
import XCTest
import CGStreamer
import CGstApp
import CGstShim

/// The repository and its test fixtures, for tests that run its scripts and pipelines.
enum TestRepository {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static var tinyModel: String { root.appendingPathComponent("Tests/Fixtures/tiny-sd1").path }
}

extension XCTestCase {
    /// A fresh folder, removed when the test ends.
    func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ocdedit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }
}

/// A GRAY8 mask of `width`×`height` lighting columns 4k…4k+3 (the preview-mask tests' stripes).
func stripeMask(_ k: Int, width: Int, height: Int) -> [UInt8] {
    var m = [UInt8](repeating: 0, count: width * height)
    for y in 0..<height { for x in (4 * k)..<(4 * k + 4) { m[y * width + x] = 255 } }
    return m
}

/// Columns of row 10 of an RGB frame `width` wide that preview-mask tinted (input bytes all 100).
func previewTintedColumns(_ f: OutputFrame, width: Int) -> [Int] {
    (0..<width).filter { f.bytes[(10 * width + $0) * 3] != 100 }
}

enum GStreamerSetup {
    /// Loads the plugin built by `make build` (Plugin/lib) or by SwiftPM (.build/release, .build/debug), with a
    /// private registry so a stale system registry cannot hide the element. `OCDEDIT_PLUGIN_DIR`, when set, is the
    /// only folder tried: `make sanitize` points it at the sanitized build's plugin, loaded into this sanitized
    /// process (with GST_REGISTRY_FORK=no, so no unsanitized gst-plugin-scanner has to load it).
    static let ready: Bool = {
        let root = TestRepository.root
        let candidates = ProcessInfo.processInfo.environment["OCDEDIT_PLUGIN_DIR"].map { [URL(fileURLWithPath: $0)] }
            ?? ["Plugin/lib", ".build/release", ".build/debug"].map { root.appendingPathComponent($0) }
        guard let dir = candidates.first(where: {
            FileManager.default.fileExists(atPath: $0.appendingPathComponent("libgstocdedit.so").path)
        }) else { return false }
        setenv("GST_PLUGIN_PATH", dir.path, 1)
        setenv("GST_REGISTRY", NSTemporaryDirectory() + "ocdedit-test-registry-\(getpid()).bin", 1)
        gst_init(nil, nil)
        return gst_element_factory_find("ocdedit") != nil
    }()
}

struct OutputFrame {
    var pts: UInt
    var duration: UInt
    var bytes: [UInt8]
    /// The sample's caps size and its running time in the sample's segment (`UInt.max` without a timestamp).
    var width = 0
    var height = 0
    var runningTime: UInt = .max
}

/// A launched pipeline with appsrcs named `video` and (optionally) `mask`, an appsink named `sink` and the element
/// under test named `e`.
final class Pipeline: LaunchedPipeline {
    let video: UnsafeMutablePointer<GstAppSrc>?
    let mask: UnsafeMutablePointer<GstAppSrc>?
    let sink: UnsafeMutablePointer<GstAppSink>
    let element: UnsafeMutablePointer<GstElement>

    override init(_ description: String) throws {
        let p = try LaunchedPipeline.launch(description)
        let bin = UnsafeMutableRawPointer(p).assumingMemoryBound(to: GstBin.self)
        func child(_ name: String) -> UnsafeMutablePointer<GstElement>? { gst_bin_get_by_name(bin, name) }
        video = child("video").map { UnsafeMutableRawPointer($0).assumingMemoryBound(to: GstAppSrc.self) }
        mask = child("mask").map { UnsafeMutableRawPointer($0).assumingMemoryBound(to: GstAppSrc.self) }
        sink = UnsafeMutableRawPointer(child("sink")!).assumingMemoryBound(to: GstAppSink.self)
        element = child("e")!
        super.init(launched: p)
    }

    func play() { gst_element_set_state(pipeline, GST_STATE_PLAYING) }
    func stop() { gst_element_set_state(pipeline, GST_STATE_NULL) }

    /// Never inlined: Reliability/tsan.supp names this function for the hand-off of the buffer it fills.
    @inline(never)
    static func buffer(_ bytes: [UInt8], pts: UInt, duration: UInt) -> UnsafeMutablePointer<GstBuffer> {
        let b = gst_buffer_new_allocate(nil, gsize(bytes.count), nil)!
        _ = bytes.withUnsafeBytes { gst_buffer_fill(b, 0, $0.baseAddress, gsize(bytes.count)) }
        b.pointee.pts = pts
        b.pointee.duration = duration
        return b
    }

    func pushVideo(_ bytes: [UInt8], pts: UInt, duration: UInt = 40_000_000) {
        XCTAssertEqual(gst_app_src_push_buffer(video, Pipeline.buffer(bytes, pts: pts, duration: duration)),
                       GST_FLOW_OK)
    }
    func pushMask(_ bytes: [UInt8], pts: UInt, duration: UInt) {
        XCTAssertEqual(gst_app_src_push_buffer(mask, Pipeline.buffer(bytes, pts: pts, duration: duration)), GST_FLOW_OK)
    }
    func endVideo() { gst_app_src_end_of_stream(video) }
    func endMask() { gst_app_src_end_of_stream(mask) }

    /// Pulls samples until EOS (or `timeout` seconds without one).
    func collect(timeout: Double = 20) -> (frames: [OutputFrame], eos: Bool) {
        var frames: [OutputFrame] = []
        while true {
            guard let sample = gst_app_sink_try_pull_sample(sink, GstClockTime(timeout * 1e9)) else {
                return (frames, gst_app_sink_is_eos(sink) != 0)
            }
            let b = gst_sample_get_buffer(sample)!
            var map = GstMapInfo()
            gst_buffer_map(b, &map, GST_MAP_READ)
            var frame = OutputFrame(pts: b.pointee.pts, duration: b.pointee.duration,
                                    bytes: Array(UnsafeBufferPointer(start: map.data, count: Int(map.size))))
            gst_buffer_unmap(b, &map)
            if let caps = gst_sample_get_caps(sample) { (frame.width, frame.height) = capsSize(caps) }
            if let segment = gst_sample_get_segment(sample), b.pointee.pts != GstClockTime.max {
                frame.runningTime = UInt(gst_segment_to_running_time(segment, GST_FORMAT_TIME, b.pointee.pts))
            }
            frames.append(frame)
            gst_sample_unref(sample)
        }
    }

    /// The first error or warning on the bus within `timeout` seconds.
    func busMessage(_ type: GstMessageType, timeout: Double = 10) -> String? {
        let bus = gst_element_get_bus(pipeline)!
        defer { gst_object_unref(bus) }
        guard let msg = gst_bus_timed_pop_filtered(bus, GstClockTime(timeout * 1e9), type) else { return nil }
        defer { gst_message_unref(msg) }
        var err: UnsafeMutablePointer<GError>?
        var debug: UnsafeMutablePointer<gchar>?
        if type == GST_MESSAGE_ERROR {
            gst_message_parse_error(msg, &err, &debug)
        } else {
            gst_message_parse_warning(msg, &err, &debug)
        }
        defer { if let err { g_error_free(err) }; g_free(debug) }
        return err.map { String(cString: $0.pointee.message) }
    }

    func set(_ property: String, int value: Int32) {
        var v = GValue()
        g_value_init(&v, GType(6 << 2)) // G_TYPE_INT
        g_value_set_int(&v, value)
        g_object_set_property(UnsafeMutableRawPointer(element).assumingMemoryBound(to: GObject.self), property, &v)
        g_value_unset(&v)
    }
    func set(_ property: String, uint64 value: UInt64) {
        var v = GValue()
        g_value_init(&v, GType(11 << 2)) // G_TYPE_UINT64
        g_value_set_uint64(&v, guint64(value))
        g_object_set_property(UnsafeMutableRawPointer(element).assumingMemoryBound(to: GObject.self), property, &v)
        g_value_unset(&v)
    }
    func set(_ property: String, string value: String) {
        var v = GValue()
        g_value_init(&v, GType(16 << 2)) // G_TYPE_STRING
        g_value_set_string(&v, value)
        g_object_set_property(UnsafeMutableRawPointer(element).assumingMemoryBound(to: GObject.self), property, &v)
        g_value_unset(&v)
    }

    /// The first message of the types in `type` within `timeout` seconds (others are discarded), as a list of 0 or 1.
    func pendingMessagesWithin(_ type: GstMessageType, timeout: Double) -> [UnsafeMutablePointer<GstMessage>] {
        let bus = gst_element_get_bus(pipeline)!
        defer { gst_object_unref(bus) }
        return gst_bus_timed_pop_filtered(bus, GstClockTime(timeout * 1e9), type).map { [$0] } ?? []
    }

    /// Every message of the types in `type` waiting on the bus now; messages of other types are discarded (as by
    /// `busMessage`: pop every type a test looks at in one call).
    func pendingMessages(_ type: GstMessageType) -> [UnsafeMutablePointer<GstMessage>] {
        let bus = gst_element_get_bus(pipeline)!
        defer { gst_object_unref(bus) }
        var messages: [UnsafeMutablePointer<GstMessage>] = []
        while let m = gst_bus_pop_filtered(bus, type) { messages.append(m) }
        return messages
    }

}

func rgbCaps(_ w: Int, _ h: Int, format: String = "RGB", fps: String = "25/1") -> String {
    "video/x-raw,format=\(format),width=\(w),height=\(h),framerate=\(fps)"
}

let frameNs: UInt = 40_000_000

/// An error message as GStreamer posts it: domain, code and text.
struct BusError {
    var domain: GQuark
    var code: Int32
    var message: String

    var isResourceError: Bool { domain == gst_resource_error_quark() }
}

/// A pipeline from a gst-launch description, set to NULL and released when it goes; on its own, a pipeline of
/// ordinary elements (no appsrc/appsink) run from PLAYING to EOS or the first error.
class LaunchedPipeline {
    let pipeline: UnsafeMutablePointer<GstElement>

    init(_ description: String) throws {
        pipeline = try Self.launch(description)
    }

    init(launched: UnsafeMutablePointer<GstElement>) {
        pipeline = launched
    }

    /// Parses `description` (skipping the test when the plugin is not built).
    static func launch(_ description: String) throws -> UnsafeMutablePointer<GstElement> {
        try XCTSkipUnless(GStreamerSetup.ready, "plugin libgstocdedit.so not built (run `make build`)")
        var error: UnsafeMutablePointer<GError>?
        guard let p = gst_parse_launch(description, &error) else {
            let message = error.map { String(cString: $0.pointee.message) } ?? "?"
            throw NSError(domain: "pipeline", code: 1, userInfo: [NSLocalizedDescriptionKey: message])
        }
        return p
    }

    deinit {
        gst_element_set_state(pipeline, GST_STATE_NULL)
        gst_object_unref(pipeline)
    }

    /// Sets `state` and returns what the state change said at once (FAILURE, SUCCESS, ASYNC, NO_PREROLL).
    func setState(_ state: GstState) -> GstStateChangeReturn { gst_element_set_state(pipeline, state) }

    /// Plays until EOS or an error, at most `timeout` seconds: (EOS seen, the error if any).
    func runToEnd(timeout: Double) -> (eos: Bool, error: BusError?) {
        _ = setState(GST_STATE_PLAYING)
        let bus = gst_element_get_bus(pipeline)!
        defer { gst_object_unref(bus) }
        let types = GstMessageType(GST_MESSAGE_EOS.rawValue | GST_MESSAGE_ERROR.rawValue)
        guard let msg = gst_bus_timed_pop_filtered(bus, GstClockTime(timeout * 1e9), types) else { return (false, nil) }
        defer { gst_message_unref(msg) }
        if msg.pointee.type == GST_MESSAGE_EOS { return (true, nil) }
        return (false, Self.parseError(msg))
    }

    /// The first error on the bus within `timeout` seconds.
    func error(timeout: Double) -> BusError? {
        let bus = gst_element_get_bus(pipeline)!
        defer { gst_object_unref(bus) }
        guard let msg = gst_bus_timed_pop_filtered(bus, GstClockTime(timeout * 1e9), GST_MESSAGE_ERROR) else {
            return nil
        }
        defer { gst_message_unref(msg) }
        return Self.parseError(msg)
    }

    static func parseError(_ msg: UnsafeMutablePointer<GstMessage>) -> BusError {
        var err: UnsafeMutablePointer<GError>?
        var debug: UnsafeMutablePointer<gchar>?
        gst_message_parse_error(msg, &err, &debug)
        defer { if let err { g_error_free(err) }; g_free(debug) }
        let e = err!.pointee
        return BusError(domain: e.domain, code: e.code, message: String(cString: e.message))
    }
}

/// PROGRESS messages with code `loading` of type START among `messages`: one per load of a model folder from disk.
func modelLoadStarts(_ messages: [UnsafeMutablePointer<GstMessage>]) -> Int {
    var count = 0
    for m in messages where m.pointee.type == GST_MESSAGE_PROGRESS {
        var type = GST_PROGRESS_TYPE_START
        var code: UnsafeMutablePointer<gchar>?
        var text: UnsafeMutablePointer<gchar>?
        gst_message_parse_progress(m, &type, &code, &text)
        if type == GST_PROGRESS_TYPE_START, let code, String(cString: code) == "loading" { count += 1 }
        g_free(code)
        g_free(text)
    }
    return count
}

/// Width and height of video caps.
func capsSize(_ caps: UnsafePointer<GstCaps>) -> (Int, Int) {
    guard let structure = gst_caps_get_structure(caps, 0) else { return (0, 0) }
    var w: gint = 0, h: gint = 0
    gst_structure_get_int(structure, "width", &w)
    gst_structure_get_int(structure, "height", &h)
    return (Int(w), Int(h))
}

/// Bytes of one frame of `caps` with GStreamer's default strides (what `gst_video_frame_map` expects).
func frameSize(_ caps: String) -> Int {
    let c = gst_caps_from_string(caps)!
    defer { gst_caps_unref(c) }
    var info = GstVideoInfo()
    guard gst_video_info_from_caps(&info, c) != 0 else { return 0 }
    return Int(info.size)
}

/// What crosses a pad, in order: buffers and downstream events, one line each (`buffer SIZE PTS`, `caps WxH`,
/// `segment base=B start=S`, `gap PTS`, `eos`, ...).
final class StreamRecorder {
    private let lock = NSLock()
    private var lines: [String] = []
    private let pad: UnsafeMutablePointer<GstPad>
    private var probe: gulong = 0

    init(_ element: UnsafeMutablePointer<GstElement>, pad name: String = "src") {
        pad = gst_element_get_static_pad(element, name)!
        let mask = GstPadProbeType(GST_PAD_PROBE_TYPE_BUFFER.rawValue | GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM.rawValue)
        probe = gst_pad_add_probe(pad, mask, { _, info, data in
            let recorder = Unmanaged<StreamRecorder>.fromOpaque(data!).takeUnretainedValue()
            recorder.record(info!)
            return GST_PAD_PROBE_OK
        }, Unmanaged.passUnretained(self).toOpaque(), nil)
    }

    deinit {
        gst_pad_remove_probe(pad, probe)
        gst_object_unref(pad)
    }

    var recorded: [String] { lock.withLock { lines } }

    /// The recorded lines without stream-start, tag and other bookkeeping events.
    var stream: [String] {
        recorded.filter { !$0.hasPrefix("stream-start") && !$0.hasPrefix("tag") && !$0.hasPrefix("latency") }
    }

    private func record(_ info: UnsafeMutablePointer<GstPadProbeInfo>) {
        let line: String
        if (info.pointee.type.rawValue & GST_PAD_PROBE_TYPE_BUFFER.rawValue) != 0 {
            let b = info.pointee.data.assumingMemoryBound(to: GstBuffer.self)
            line = "buffer \(gst_buffer_get_size(b)) \(StreamRecorder.time(b.pointee.pts))"
        } else {
            let e = info.pointee.data.assumingMemoryBound(to: GstEvent.self)
            switch e.pointee.type {
            case GST_EVENT_CAPS:
                var caps: UnsafeMutablePointer<GstCaps>?
                gst_event_parse_caps(e, &caps)
                let (w, h) = caps.map { capsSize($0) } ?? (0, 0)
                line = "caps \(w)x\(h)"
            case GST_EVENT_SEGMENT:
                var segment: UnsafePointer<GstSegment>?
                gst_event_parse_segment(e, &segment)
                line = "segment base=\(StreamRecorder.time(segment!.pointee.base)) "
                    + "start=\(StreamRecorder.time(segment!.pointee.start))"
            case GST_EVENT_GAP:
                var pts: GstClockTime = 0, duration: GstClockTime = 0
                gst_event_parse_gap(e, &pts, &duration)
                line = "gap \(StreamRecorder.time(pts))"
            default:
                line = String(cString: gst_event_type_get_name(e.pointee.type))
            }
        }
        lock.withLock { lines.append(line) }
    }

    /// Milliseconds, or "none".
    static func time(_ t: GstClockTime) -> String { t == GstClockTime.max ? "none" : "\(t / 1_000_000)ms" }
}

/// A source pad owned by the test, linked to one of the element's sink pads: pushes buffers and serialized events in
/// exactly the order a test gives (appsrc cannot send GAP events or segments of its own choosing between buffers).
/// Pushes block while the element's pad is full: feed the video and the mask pads from different threads.
final class PadFeeder {
    let pad: UnsafeMutablePointer<GstPad>

    init(_ element: UnsafeMutablePointer<GstElement>, pad name: String = "sink", streamID: String = "feeder") {
        pad = gst_pad_new(streamID, GST_PAD_SRC)
        gst_pad_set_active(pad, 1)
        let sink = gst_element_get_static_pad(element, name)!
        XCTAssertEqual(gst_pad_link(pad, sink), GST_PAD_LINK_OK)
        gst_object_unref(sink)
        XCTAssertNotEqual(gst_pad_push_event(pad, gst_event_new_stream_start(streamID)), 0)
    }

    deinit {
        gst_pad_set_active(pad, 0)
        gst_object_unref(pad)
    }

    @discardableResult
    func caps(_ description: String) -> Bool {
        let c = gst_caps_from_string(description)!
        defer { gst_caps_unref(c) }
        return gst_pad_push_event(pad, gst_event_new_caps(c)) != 0
    }

    /// A TIME segment starting at `start` whose running time begins at `base`.
    @discardableResult
    func segment(base: UInt = 0, start: UInt = 0) -> Bool {
        var segment = GstSegment()
        gst_segment_init(&segment, GST_FORMAT_TIME)
        segment.base = guint64(base)
        segment.start = guint64(start)
        segment.time = guint64(start)
        segment.position = guint64(start)
        return gst_pad_push_event(pad, gst_event_new_segment(&segment)) != 0
    }

    @discardableResult
    func push(_ bytes: [UInt8], pts: UInt, duration: UInt = 40_000_000) -> GstFlowReturn {
        gst_pad_push(pad, Pipeline.buffer(bytes, pts: pts, duration: duration))
    }

    @discardableResult
    func gap(pts: UInt, duration: UInt = 40_000_000) -> Bool {
        gst_pad_push_event(pad, gst_event_new_gap(pts, duration)) != 0
    }

    func eos() { _ = gst_pad_push_event(pad, gst_event_new_eos()) }
}
