// Live mode (issue 14, item 4) and EOS during an edit (issue 15): a live source keeps its rate through a model that
// cannot keep up (late windows pass through, counted in windows-late and reported by QoS messages), nothing changes
// when upstream is not live, and an EOS that cancels stops the running edit within a diffusion step.
import Foundation
import XCTest
import CGStreamer
import CGstApp

final class LiveModeTests: XCTestCase {
    let (w, h) = (64, 48)
    let tinyModel = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tiny-sd1").path
    /// About 40 s a window of two frames uncancelled (ElementMatrixTests.testFlushDuringARunningEdit).
    var slowEdit: String { "model=\(tinyModel) prompt=\"a blue ball\" steps=400 strength=1 processing-size=128" }

    func intProperty(_ p: Pipeline, _ name: String) -> Int {
        var v = GValue()
        g_value_init(&v, GType(6 << 2)) // G_TYPE_INT
        g_object_get_property(UnsafeMutableRawPointer(p.element).assumingMemoryBound(to: GObject.self), name, &v)
        defer { g_value_unset(&v) }
        return Int(g_value_get_int(&v))
    }

    /// Frames pulled until EOS (or `timeout`), each with the wall-clock time it arrived.
    func collectTimed(_ p: Pipeline, timeout: Double) -> (frames: [(pts: UInt, bytes: [UInt8], at: Date)], eos: Bool) {
        var frames: [(pts: UInt, bytes: [UInt8], at: Date)] = []
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            guard let sample = gst_app_sink_try_pull_sample(p.sink, 200_000_000) else {
                if gst_app_sink_is_eos(p.sink) != 0 { return (frames, true) }
                continue
            }
            let b = gst_sample_get_buffer(sample)!
            var map = GstMapInfo()
            gst_buffer_map(b, &map, GST_MAP_READ)
            frames.append((b.pointee.pts, Array(UnsafeBufferPointer(start: map.data, count: Int(map.size))), Date()))
            gst_buffer_unmap(b, &map)
            gst_sample_unref(sample)
        }
        return (frames, false)
    }

    /// QoS messages on the bus now, (dropped, processed) of each, and the errors' texts (other messages are
    /// discarded).
    func qosStats(_ p: Pipeline) -> (qos: [(dropped: UInt64, processed: UInt64)], errors: [String]) {
        var errors: [String] = []
        let qos = p.pendingMessages(GstMessageType(GST_MESSAGE_QOS.rawValue | GST_MESSAGE_ERROR.rawValue))
            .compactMap { m -> (dropped: UInt64, processed: UInt64)? in
            defer { gst_message_unref(m) }
            if m.pointee.type == GST_MESSAGE_ERROR {
                errors.append(LaunchedPipeline.parseError(m).message)
                return nil
            }
            var format = GST_FORMAT_UNDEFINED
            var processed: guint64 = 0, dropped: guint64 = 0
            gst_message_parse_qos_stats(m, &format, &processed, &dropped)
            XCTAssertEqual(format, GST_FORMAT_BUFFERS)
            return (UInt64(dropped), UInt64(processed))
        }
        return (qos, errors)
    }

    func latencyAnswer(_ p: Pipeline) -> (live: Bool, min: GstClockTime) {
        let src = gst_element_get_static_pad(p.element, "src")!
        defer { gst_object_unref(src) }
        let query = gst_query_new_latency()!
        defer { gst_query_unref(query) }
        XCTAssertNotEqual(gst_pad_query(src, query), 0)
        var live: gboolean = 0
        var minimum: GstClockTime = 0, maximum: GstClockTime = 0
        gst_query_parse_latency(query, &live, &minimum, &maximum)
        return (live != 0, minimum)
    }

    /// A live 25 fps source (4 s, 100 frames) through a model far too slow for it (200 steps a window, windows of 4
    /// = 160 ms, a 200 ms budget): frames come out at the source's rate, every frame once and in order, no gap longer
    /// than the latency; the windows that cannot be edited in time pass through, counted in windows-late and posted
    /// as QoS messages; the stream ends with EOS (the window being edited then is cancelled, eos-policy=auto).
    func testLiveSourceKeepsItsRateWhenTheModelCannotKeepUp() throws {
        let count = 100
        let p = try Pipeline("""
            videotestsrc is-live=true num-buffers=\(count) ! video/x-raw,format=RGB,width=\(w),height=\(h),\
            framerate=25/1 ! ocdedit name=e window-size=4 model=\(tinyModel) prompt="a blue ball" steps=200 \
            processing-size=64 processing-latency=200 ! appsink name=sink sync=true
            """)
        p.play()
        let (frames, eos) = collectTimed(p, timeout: 30)
        XCTAssertTrue(eos, "no EOS: the stream stalled")
        let late = intProperty(p, "windows-late")
        let (qos, errors) = qosStats(p)
        XCTAssertEqual(errors, [])
        XCTAssertEqual(frames.count, count)
        let origin = frames.first?.pts ?? 0 // a live source stamps running time: the first frame's is not 0
        XCTAssertEqual(frames.map(\.pts), (0..<UInt(frames.count)).map { origin + $0 * frameNs })
        guard let first = frames.first, let last = frames.last else { return }
        let span = last.at.timeIntervalSince(first.at)
        XCTAssertLessThan(span, 4 + 2, "frames did not come at the source's rate (\(span) s for 4 s)")
        let gaps = zip(frames.dropFirst(), frames).map { $0.at.timeIntervalSince($1.at) }
        XCTAssertLessThan(gaps.max() ?? 0, 1.5, "a stall between two frames")
        XCTAssertGreaterThan(late, 0)
        XCTAssertEqual(qos.count, late, "one QoS message per late window")
        XCTAssertEqual(qos.last?.dropped, UInt64(4 * late), "dropped = frames of the late windows")
        XCTAssertTrue(latencyAnswer(p).live)
    }

    /// The same element on a source that is not live: nothing changes, every window is edited (each output frame
    /// differs from its input), none is late, no QoS message; the latency answer says not live and adds the budget.
    func testNonLiveSourceEditsEveryWindow() throws {
        let p = try Pipeline("""
            appsrc name=video format=time caps=\(rgbCaps(w, h)) ! ocdedit name=e window-size=4 \
            model=\(tinyModel) prompt="a blue ball" steps=2 processing-size=64 processing-latency=50 \
            ! appsink name=sink sync=false
            """)
        p.play()
        let inputs = (0..<8).map { i in (0..<(w * h * 3)).map { UInt8(truncatingIfNeeded: $0 * 7 + i * 13) } }
        for (i, bytes) in inputs.enumerated() { p.pushVideo(bytes, pts: UInt(i) * frameNs) }
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 120)
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.count, 8)
        for (f, input) in zip(frames, inputs) { XCTAssertNotEqual(f.bytes, input, "frame \(f.pts) not edited") }
        XCTAssertEqual(intProperty(p, "windows-late"), 0)
        let (qos, errors) = qosStats(p)
        XCTAssertEqual(qos.count, 0)
        XCTAssertEqual(errors, [])
        let answer = latencyAnswer(p)
        XCTAssertFalse(answer.live)
        XCTAssertEqual(answer.min, 4 * frameNs + 50_000_000)
    }

    /// live=true on a source that is not live (it pushes as fast as it can): the latency answer says live; the window
    /// that prerolls (no clock yet) and those that arrive while an edit runs pass through, so 40 frames of a
    /// 40 s-a-window model end in seconds.
    func testLivePropertyWithoutALiveSource() throws {
        let p = try Pipeline("""
            videotestsrc num-buffers=40 ! video/x-raw,format=RGB,width=\(w),height=\(h),framerate=25/1 \
            ! ocdedit name=e live=true window-size=2 \(slowEdit) processing-latency=300 \
            ! appsink name=sink sync=false
            """)
        let start = Date()
        p.play()
        let (frames, eos) = p.collect(timeout: 60)
        XCTAssertTrue(eos)
        XCTAssertLessThan(Date().timeIntervalSince(start), 15)
        XCTAssertEqual(frames.map(\.pts), (0..<40).map { UInt($0) * frameNs })
        XCTAssertGreaterThan(intProperty(p, "windows-late"), 0)
        XCTAssertTrue(latencyAnswer(p).live)
    }

    /// EOS while a window is being edited (what `gst-launch-1.0 -e` sends on Ctrl-C), not live, eos-policy=cancel:
    /// the edit stops within a diffusion step (seconds, where the window takes about 40 s), and every owed frame
    /// leaves unedited: the window being edited and the partial one after it.
    func testEOSDuringAnEditWithEOSPolicyCancel() throws {
        let p = try Pipeline("""
            appsrc name=video format=time caps=\(rgbCaps(w, h)) ! ocdedit name=e window-size=2 \(slowEdit) \
            eos-policy=cancel ! appsink name=sink sync=false
            """)
        p.play()
        let inputs = (0..<3).map { [UInt8](repeating: UInt8(10 + $0), count: w * h * 3) }
        for i in 0..<3 { p.pushVideo(inputs[i], pts: UInt(i) * frameNs) }
        let ready = Date().addingTimeInterval(5)
        while gst_app_src_get_current_level_buffers(p.video) > 0 && Date() < ready { usleep(10_000) }
        usleep(1_000_000) // the first window is being edited now
        let start = Date()
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 60)
        XCTAssertTrue(eos)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5, "EOS waited for the edit")
        XCTAssertEqual(frames.map(\.pts), [0, frameNs, 2 * frameNs])
        XCTAssertEqual(frames.map(\.bytes), inputs, "owed frames pass through (late-policy=pass-through)")
        XCTAssertEqual(intProperty(p, "windows-late"), 0, "an EOS cancel is not a late window")
        XCTAssertNil(p.busMessage(GST_MESSAGE_ERROR, timeout: 0))
    }

    /// late-policy=last-edited: after an edited window, the windows an EOS cancels (a slow one being edited and a
    /// partial one) show the last edited frame with their own timestamps and durations.
    func testLastEditedPolicyShowsTheLastEditedFrame() throws {
        let p = try Pipeline("""
            appsrc name=video format=time caps=\(rgbCaps(w, h)) ! ocdedit name=e window-size=2 model=\(tinyModel) \
            prompt="a blue ball" steps=2 processing-size=64 eos-policy=cancel late-policy=last-edited \
            ! appsink name=sink sync=false
            """)
        p.play()
        let input = [UInt8](repeating: 90, count: w * h * 3)
        for i in 0..<2 { p.pushVideo(input, pts: UInt(i) * frameNs) }
        var edited: [OutputFrame] = []
        while edited.count < 2, let sample = gst_app_sink_try_pull_sample(p.sink, 60_000_000_000) {
            let b = gst_sample_get_buffer(sample)!
            var map = GstMapInfo()
            gst_buffer_map(b, &map, GST_MAP_READ)
            edited.append(OutputFrame(pts: b.pointee.pts, duration: b.pointee.duration,
                                      bytes: Array(UnsafeBufferPointer(start: map.data, count: Int(map.size)))))
            gst_buffer_unmap(b, &map)
            gst_sample_unref(sample)
        }
        XCTAssertEqual(edited.count, 2)
        XCTAssertNotEqual(edited.last?.bytes, input, "the first window was not edited")
        // The next windows' edits are slow: the EOS after them cancels them.
        for (name, value) in [("steps", "400"), ("strength", "1"), ("processing-size", "128")] {
            gst_util_set_object_arg(UnsafeMutableRawPointer(p.element).assumingMemoryBound(to: GObject.self), name,
                                    value)
        }
        for i in 2..<5 { p.pushVideo(input, pts: UInt(i) * frameNs) }
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 60)
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.map(\.pts), [2 * frameNs, 3 * frameNs, 4 * frameNs])
        for f in frames { XCTAssertEqual(f.bytes, edited.last?.bytes, "frame \(f.pts)") }
        XCTAssertEqual(frames.map(\.duration), [frameNs, frameNs, frameNs])
    }
}
