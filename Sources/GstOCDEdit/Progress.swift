// Progress on the bus, so any application (or `gst-launch-1.0 -m`) can show how far an edit is: after each window
// is pushed, one element message named `progress` with progressreport's fields (`percent`, `percent-double`,
// `current`, `total`, `format`) plus `window`, `step`, `steps`, `seconds` and `eta`. The model load's PROGRESS
// messages (code `loading`) are posted by the element itself around `EditorSession.hold`.
import Foundation
import CGStreamer
import WindowEditor

/// The `progress` message's content for one pushed window.
struct WindowProgressReport: Equatable {
    /// Index of the window since start (0-based).
    var window: Int
    /// Frames pushed since start, and the stream's frames if a duration query answered (else -1).
    var current: Int64
    var total: Int64
    /// Steps of the window's schedule: the message comes when the window is done, so `step` = `steps`.
    var step: Int
    var steps: Int
    /// The window's edit time, and the estimated seconds left (-1 without a total).
    var seconds: Double
    var eta: Double

    /// 0…100 of `total` (0 while the total is unknown).
    var percentDouble: Double {
        total > 0 ? min(100, 100 * Double(current) / Double(total)) : 0
    }
}

/// Counts what an element has pushed since start; each pushed window gets its report. Thread-safe.
final class WindowProgress: @unchecked Sendable {
    private let lock = NSLock()
    private var frames: Int64 = 0
    private var editSeconds = 0.0

    func reset() {
        lock.withLock {
            frames = 0
            editSeconds = 0
        }
    }

    /// Adds a pushed window of `count` frames edited in `seconds`; `total` is the stream's length in frames if
    /// known. The ETA is the mean edit time per frame so far times the frames left.
    func windowPushed(number: Int, count: Int, seconds: Double, steps: Int, total: Int64?) -> WindowProgressReport {
        lock.withLock {
            frames += Int64(count)
            editSeconds += seconds
            let known = total.map { max($0, frames) }
            let eta = known.map { frames > 0 ? editSeconds / Double(frames) * Double($0 - frames) : -1 } ?? -1
            return WindowProgressReport(window: number, current: frames, total: known ?? -1, step: steps,
                                        steps: steps, seconds: seconds, eta: eta)
        }
    }

    /// The stream's length in frames from upstream of `sinkPad`: a DEFAULT (frames) duration if upstream answers
    /// one, else the TIME duration at the caps' frame rate. Nil if unknown.
    static func totalFrames(upstreamOf sinkPad: UnsafeMutablePointer<GstPad>, fpsN: Int32, fpsD: Int32) -> Int64? {
        var frames: gint64 = -1
        if gst_pad_peer_query_duration(sinkPad, GST_FORMAT_DEFAULT, &frames) != 0, frames > 0 { return Int64(frames) }
        var ns: gint64 = -1
        guard fpsN > 0, fpsD > 0, gst_pad_peer_query_duration(sinkPad, GST_FORMAT_TIME, &ns) != 0, ns > 0 else {
            return nil
        }
        // Frames whose start lies before the end: ⌈duration × rate⌉, less a rounding hair (a 3 s stream at 25/1 is
        // 75 frames even if the container rounds its duration up by a nanosecond).
        let exact = Double(ns) * Double(fpsN) / (Double(fpsD) * 1e9)
        return Int64((exact - 1e-3).rounded(.up))
    }

    /// The element message `progress` for `report` from `element`.
    static func message(_ report: WindowProgressReport,
                        from element: UnsafeMutablePointer<GstElement>) -> UnsafeMutablePointer<GstMessage> {
        let s = gst_structure_new_empty("progress")!
        let percent = report.percentDouble
        set(s, "percent", int: Int32(percent))
        set(s, "percent-double", double: percent)
        set(s, "current", int64: report.current)
        set(s, "total", int64: report.total)
        set(s, "format", string: "frames")
        set(s, "window", int: Int32(report.window))
        set(s, "step", int: Int32(report.step))
        set(s, "steps", int: Int32(report.steps))
        set(s, "seconds", double: report.seconds)
        set(s, "eta", double: report.eta)
        let object = UnsafeMutableRawPointer(element).assumingMemoryBound(to: GstObject.self)
        return gst_message_new_element(object, s)
    }

    // GLib's fundamental type ids (G_TYPE_INT etc. are macros Swift does not import).
    private static let gInt = GType(6 << 2), gInt64 = GType(10 << 2), gDouble = GType(15 << 2)
    private static let gString = GType(16 << 2)

    private static func set(_ s: UnsafeMutablePointer<GstStructure>, _ name: String, int v: Int32) {
        set(s, name, gInt) { g_value_set_int($0, v) }
    }
    private static func set(_ s: UnsafeMutablePointer<GstStructure>, _ name: String, int64 v: Int64) {
        set(s, name, gInt64) { g_value_set_int64($0, gint64(v)) }
    }
    private static func set(_ s: UnsafeMutablePointer<GstStructure>, _ name: String, double v: Double) {
        set(s, name, gDouble) { g_value_set_double($0, v) }
    }
    private static func set(_ s: UnsafeMutablePointer<GstStructure>, _ name: String, string v: String) {
        set(s, name, gString) { g_value_set_string($0, v) }
    }

    /// Field `name` of `s`: a GValue of `type`, filled by `fill`, handed to the structure.
    private static func set(_ s: UnsafeMutablePointer<GstStructure>, _ name: String, _ type: GType,
                            _ fill: (UnsafeMutablePointer<GValue>) -> Void) {
        var value = GValue()
        g_value_init(&value, type)
        fill(&value)
        gst_structure_take_value(s, name, &value)
    }
}
