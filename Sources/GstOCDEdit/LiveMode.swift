// Live mode's pieces (the decisions are in OCDEdit.swift): the deadline of a window on the pipeline clock, the
// counters behind `windows-late` and the QoS messages, and the QoS message itself.
// A window's deadline is the running time of its first frame plus the latency (upstream's and the element's own:
// the window's duration and the processing budget); its frames must leave by then to be on time downstream.
import Foundation
import CGStreamer

/// Why a window leaves without its edit.
enum LateReason {
    /// Its edit would miss, or missed, its deadline (live mode): counted in `windows-late`, reported by QoS.
    case deadline
    /// EOS came with eos-policy cancel (or auto in live mode).
    case eos
}

/// The running time by which a window must leave, on the clock of the element's pipeline.
final class Deadline: @unchecked Sendable {
    private let clock: UnsafeMutablePointer<GstClock>
    private let baseTime: GstClockTime
    let runningTime: GstClockTime

    /// Takes the reference `clock` carries (`gst_element_get_clock` returns one).
    init(takingClock clock: UnsafeMutablePointer<GstClock>, baseTime: GstClockTime, runningTime: GstClockTime) {
        self.clock = clock
        self.baseTime = baseTime
        self.runningTime = runningTime
    }
    deinit { gst_object_unref(UnsafeMutableRawPointer(clock)) }

    /// The clock's running time now.
    var now: GstClockTime {
        let t = gst_clock_get_time(clock)
        return t > baseTime ? t - baseTime : 0
    }
    var passed: Bool { now >= runningTime }

    /// Nanoseconds past the deadline (negative: early) of an edit of `seconds` that starts now.
    func lateness(editing seconds: Double) -> Int64 {
        Int64(bitPattern: UInt64(now)) + Int64(seconds * 1e9) - Int64(bitPattern: UInt64(runningTime))
    }
}

/// Counted since start: late windows, and frames edited or pushed unedited for lateness (QoS statistics).
final class LiveCounters: @unchecked Sendable {
    private let lock = NSLock()
    private var late = 0
    private var processed: UInt64 = 0
    private var dropped: UInt64 = 0

    var windowsLate: Int { lock.withLock { late } }

    func reset() { lock.withLock { (late, processed, dropped) = (0, 0, 0) } }

    func edited(frames: Int) { lock.withLock { processed += UInt64(frames) } }

    /// A late window of `frames` frames: the totals after counting it.
    func late(frames: Int) -> (processed: UInt64, dropped: UInt64) {
        lock.withLock {
            late += 1
            dropped += UInt64(frames)
            return (processed, dropped)
        }
    }
}

enum LiveQoS {
    /// A QoS message for a window pushed unedited: `jitter` how late its edit would have been (or was) in ns, the
    /// stats in buffers (frames): processed = frames edited since start, dropped = frames whose edit was skipped.
    static func message(from element: UnsafeMutablePointer<GstElement>, runningTime: GstClockTime,
                        streamTime: GstClockTime, timestamp: GstClockTime, duration: GstClockTime, jitter: Int64,
                        processed: UInt64, dropped: UInt64) -> UnsafeMutablePointer<GstMessage> {
        let object = UnsafeMutableRawPointer(element).assumingMemoryBound(to: GstObject.self)
        let m = gst_message_new_qos(object, 1, runningTime, streamTime, timestamp, duration)!
        let total = processed + dropped
        let quality = total > 0 ? Int32(1_000_000 * processed / total) : 1_000_000
        gst_message_set_qos_values(m, gint64(jitter), 1.0, quality)
        gst_message_set_qos_stats(m, GST_FORMAT_BUFFERS, guint64(processed), guint64(dropped))
        return m
    }
}
