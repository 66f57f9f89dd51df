// Progress on the bus: a PROGRESS start/complete pair (code `loading`) around the model load, and one `progress`
// element message per window with progressreport's fields plus the window's.
import Foundation
import XCTest
import CGStreamer

final class ProgressMessageTests: XCTestCase {
    let tinyModel = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tiny-sd1").path

    /// The fields of one `progress` element message.
    struct Report {
        var percent: Int32 = -1, percentDouble = -1.0, current: Int64 = -2, total: Int64 = -2, format = ""
        var window: Int32 = -1, step: Int32 = -1, steps: Int32 = -1, seconds = -1.0, eta = -2.0
    }

    static func report(_ s: UnsafePointer<GstStructure>) -> Report {
        var r = Report()
        var i: gint = 0, i64: gint64 = 0, d: gdouble = 0
        if gst_structure_get_int(s, "percent", &i) != 0 { r.percent = i }
        if gst_structure_get_double(s, "percent-double", &d) != 0 { r.percentDouble = d }
        if gst_structure_get_int64(s, "current", &i64) != 0 { r.current = Int64(i64) }
        if gst_structure_get_int64(s, "total", &i64) != 0 { r.total = Int64(i64) }
        if let f = gst_structure_get_string(s, "format") { r.format = String(cString: f) }
        if gst_structure_get_int(s, "window", &i) != 0 { r.window = i }
        if gst_structure_get_int(s, "step", &i) != 0 { r.step = i }
        if gst_structure_get_int(s, "steps", &i) != 0 { r.steps = i }
        if gst_structure_get_double(s, "seconds", &d) != 0 { r.seconds = d }
        if gst_structure_get_double(s, "eta", &d) != 0 { r.eta = d }
        return r
    }

    /// Runs `description` to EOS and returns, in bus order, the PROGRESS messages (type, code) and the reports.
    func run(_ description: String) throws -> (loading: [(GstProgressType, String)], reports: [Report]) {
        let p = try LaunchedPipeline(description)
        _ = p.setState(GST_STATE_PLAYING)
        let bus = gst_element_get_bus(p.pipeline)!
        defer { gst_object_unref(bus) }
        var loading: [(GstProgressType, String)] = []
        var reports: [Report] = []
        let types = GST_MESSAGE_EOS.rawValue | GST_MESSAGE_ERROR.rawValue | GST_MESSAGE_PROGRESS.rawValue
            | GST_MESSAGE_ELEMENT.rawValue
        while let m = gst_bus_timed_pop_filtered(bus, 120_000_000_000, GstMessageType(types)) {
            defer { gst_message_unref(m) }
            switch m.pointee.type {
            case GST_MESSAGE_EOS:
                return (loading, reports)
            case GST_MESSAGE_ERROR:
                XCTFail("error: \(LaunchedPipeline.parseError(m).message)")
                return (loading, reports)
            case GST_MESSAGE_PROGRESS:
                var type = GST_PROGRESS_TYPE_START
                var code: UnsafeMutablePointer<gchar>?
                var text: UnsafeMutablePointer<gchar>?
                gst_message_parse_progress(m, &type, &code, &text)
                loading.append((type, code.map { String(cString: $0) } ?? ""))
                g_free(code)
                g_free(text)
            default:
                if let s = gst_message_get_structure(m), gst_structure_has_name(s, "progress") != 0 {
                    reports.append(Self.report(s))
                }
            }
        }
        XCTFail("no EOS within 120 s")
        return (loading, reports)
    }

    /// 21 frames in windows of 8 with a mask: PROGRESS start then complete (code `loading`) before the first
    /// `progress` message; three reports, windows 0, 1, 2, frames 8, 16, 21, every field in range.
    func testLoadingPairAndOneProgressMessagePerWindow() throws {
        let (loading, reports) = try run("""
            videotestsrc num-buffers=21 pattern=ball ! video/x-raw,format=RGB,width=64,height=48,framerate=25/1 \
            ! ocdedit name=e window-size=8 model=\(tinyModel) prompt="a blue ball" steps=2 processing-size=64 \
            ! fakesink \
            videotestsrc num-buffers=21 pattern=ball ! video/x-raw,format=GRAY8,width=64,height=48,framerate=25/1 \
            ! e.mask
            """)
        XCTAssertEqual(loading.map(\.1), ["loading", "loading"])
        XCTAssertEqual(loading.map(\.0), [GST_PROGRESS_TYPE_START, GST_PROGRESS_TYPE_COMPLETE])
        XCTAssertEqual(reports.map(\.window), [0, 1, 2])
        XCTAssertEqual(reports.map(\.current), [8, 16, 21])
        for r in reports {
            XCTAssertEqual(r.format, "frames")
            XCTAssertEqual(r.steps, 2)
            XCTAssertEqual(r.step, r.steps)
            XCTAssertGreaterThan(r.seconds, 0)
            XCTAssertLessThan(r.seconds, 120)
            if r.total >= 0 {
                XCTAssertEqual(r.total, 21)
                XCTAssertEqual(r.percentDouble, 100 * Double(r.current) / 21, accuracy: 1e-9)
                XCTAssertEqual(r.percent, Int32(r.percentDouble))
                XCTAssertGreaterThanOrEqual(r.eta, 0)
            } else {
                XCTAssertEqual(r.total, -1)
                XCTAssertEqual(r.percent, 0)
                XCTAssertEqual(r.eta, -1)
            }
        }
        XCTAssertEqual(reports.last?.eta ?? -1, reports.last?.total == 21 ? 0 : -1)
    }

    /// A file source answers the duration query: `total` is the stream's frame count, percent reaches 100 and the
    /// ETA falls to 0 at the last window.
    func testTotalFromTheDurationQuery() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ocdedit-progress-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let clip = dir.appendingPathComponent("in.mkv").path
        XCTAssertTrue(try LaunchedPipeline("""
            videotestsrc num-buffers=20 ! video/x-raw,width=64,height=48,framerate=10/1 ! matroskamux \
            ! filesink location=\(clip)
            """).runToEnd(timeout: 60).eos)
        let (_, reports) = try run("""
            filesrc location=\(clip) ! decodebin ! videoconvert ! video/x-raw,format=RGB \
            ! ocdedit window-size=8 model=\(tinyModel) prompt="a blue ball" steps=1 processing-size=64 ! fakesink
            """)
        XCTAssertEqual(reports.map(\.current), [8, 16, 20])
        XCTAssertEqual(reports.map(\.total), [20, 20, 20])
        XCTAssertEqual(reports.map(\.percent), [40, 80, 100])
        XCTAssertEqual(reports.last?.eta, 0)
        XCTAssertGreaterThan(reports.first?.eta ?? 0, 0)
    }
}
