import Foundation
import XCTest
import CGStreamer
import CGstApp

final class ElementTests: XCTestCase {
    let w = 64, h = 48

    func solid(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> [UInt8] {
        (0..<(w * h)).flatMap { _ in [r, g, b] }
    }

    /// The tiny random SD 1.x pipeline of the parity fixtures (fast; its edits are noise, but every path runs).
    let tinyModel = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tiny-sd1").path

    func videoOnly(window: Int, extra: String = "") throws -> Pipeline {
        try Pipeline("appsrc name=video format=time caps=\(rgbCaps(w, h)) "
                         + "! ocdedit name=e window-size=\(window) \(extra) ! appsink name=sink sync=false")
    }

    /// Every frame comes back once, in order, with its PTS, for windows that do and do not divide the stream.
    func testFrameCountAndTimestamps() throws {
        for window in [1, 3, 8] {
            for count in [1, 5, 8, 21, 24] {
                let p = try videoOnly(window: window)
                p.play()
                for i in 0..<count { p.pushVideo(solid(UInt8(i), 0, 0), pts: UInt(i) * frameNs) }
                p.endVideo()
                let (frames, eos) = p.collect()
                XCTAssertTrue(eos, "window \(window), \(count) frames: no EOS")
                XCTAssertEqual(frames.map(\.pts), (0..<count).map { UInt($0) * frameNs },
                               "window \(window), \(count) frames")
                XCTAssertEqual(frames.map(\.duration), Array(repeating: frameNs, count: count))
                XCTAssertEqual(frames.map { $0.bytes[0] }, (0..<count).map { UInt8($0) }, "pass-through changed pixels")
            }
        }
    }

    func testEOSWithNoFrames() throws {
        let p = try videoOnly(window: 8)
        p.play()
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 10)
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.count, 0)
    }

    /// Generated streams: 21 frames at 25 fps, a GRAY8 mask of another size and rate (or none), RGB and I420.
    func testGeneratedStreams() throws {
        let mask = "videotestsrc pattern=ball num-buffers=30 "
            + "! video/x-raw,format=GRAY8,width=40,height=30,framerate=30/1 ! e.mask"
        for (format, maskBranch) in [("RGB", mask), ("RGB", ""), ("I420", mask), ("I420", "")] {
            let p = try Pipeline("""
                videotestsrc num-buffers=21 ! video/x-raw,format=\(format),width=64,height=48,framerate=25/1 \
                ! ocdedit name=e window-size=8 ! appsink name=sink sync=false \(maskBranch)
                """)
            p.play()
            let (frames, eos) = p.collect()
            XCTAssertTrue(eos, "\(format) mask=\(!maskBranch.isEmpty)")
            XCTAssertEqual(frames.map(\.pts), (0..<21).map { UInt($0) * frameNs },
                           "\(format) mask=\(!maskBranch.isEmpty)")
        }
    }

    /// Mask k lights a vertical stripe at columns [2k, 2k+2) of a 32×24 mask (4k…4k+3 at frame size); masks come at
    /// 10 fps, frames at 25 fps, so frame i must be tinted in the stripe of mask ⌊40i/100⌋ (newest at or before it).
    func testMaskMatchedByRunningTime() throws {
        let p = try Pipeline("""
            appsrc name=video format=time caps=\(rgbCaps(w, h)) ! ocdedit name=e window-size=3 preview-mask=true \
            ! appsink name=sink sync=false \
            appsrc name=mask format=time caps=video/x-raw,format=GRAY8,width=32,height=24,framerate=10/1 ! e.mask
            """)
        p.play()
        let frames = 21, masks = 9
        let maskThread = Thread {
            for k in 0..<masks {
                var m = [UInt8](repeating: 0, count: 32 * 24)
                for y in 0..<24 { m[y * 32 + 2 * k] = 255; m[y * 32 + 2 * k + 1] = 255 }
                p.pushMask(m, pts: UInt(k) * 100_000_000, duration: 100_000_000)
            }
            p.endMask()
        }
        maskThread.start()
        for i in 0..<frames { p.pushVideo(solid(100, 100, 100), pts: UInt(i) * frameNs) }
        p.endVideo()
        let (out, eos) = p.collect()
        XCTAssertTrue(eos)
        XCTAssertEqual(out.count, frames)
        for (i, f) in out.enumerated() {
            let tintedColumns = (0..<w).filter { f.bytes[(10 * w + $0) * 3] != 100 }
            let k = (40 * i) / 100
            XCTAssertEqual(tintedColumns, Array((4 * k)..<(4 * k + 4)), "frame \(i) should use mask \(k)")
        }
    }

    /// preview-mask changes exactly the pixels whose mask value reaches the threshold, and nothing else.
    func testPreviewMaskTintsExactlyTheMaskedPixels() throws {
        for format in ["RGB", "BGRx"] {
            let bpp = format == "RGB" ? 3 : 4
            let p = try Pipeline("""
                appsrc name=video format=time caps=\(rgbCaps(w, h, format: format)) \
                ! ocdedit name=e window-size=2 preview-mask=true mask-threshold=100 ! appsink name=sink sync=false \
                appsrc name=mask format=time caps=video/x-raw,format=GRAY8,width=\(w),height=\(h),framerate=25/1 \
                ! e.mask
                """)
            p.play()
            var m = [UInt8](repeating: 0, count: w * h)
            for y in 10..<30 { for x in 20..<50 { m[y * w + x] = UInt8(truncatingIfNeeded: 90 + (x + y) % 20) } }
            let input = (0..<(w * h * bpp)).map { UInt8(truncatingIfNeeded: $0 * 7 % 200 + 20) }
            for i in 0..<2 {
                p.pushMask(m, pts: UInt(i) * frameNs, duration: frameNs)
                p.pushVideo(input, pts: UInt(i) * frameNs)
            }
            p.endMask()
            p.endVideo()
            let (out, eos) = p.collect()
            XCTAssertTrue(eos)
            XCTAssertEqual(out.count, 2)
            for f in out {
                for i in 0..<(w * h) {
                    let changed = (0..<3).contains { f.bytes[i * bpp + $0] != input[i * bpp + $0] }
                    XCTAssertEqual(changed, m[i] >= 100, "\(format) pixel \(i) mask \(m[i])")
                    if bpp == 4 { XCTAssertEqual(f.bytes[i * 4 + 3], input[i * 4 + 3], "padding byte changed") }
                }
            }
        }
    }

    /// Caps the mask pad cannot take give a bus error that names the pad and the expected format; no crash.
    func testWrongMaskCapsGiveBusError() throws {
        let p = try Pipeline("""
            appsrc name=video format=time caps=\(rgbCaps(w, h)) ! ocdedit name=e ! appsink name=sink sync=false \
            appsrc name=mask format=time caps=\(rgbCaps(w, h)) ! e.mask
            """)
        p.play()
        p.pushMask(solid(1, 2, 3), pts: 0, duration: frameNs)
        p.pushVideo(solid(1, 2, 3), pts: 0)
        let error = p.busMessage(GST_MESSAGE_ERROR)
        XCTAssertNotNil(error)
        XCTAssertTrue(error?.contains("mask pad") == true && error?.contains("GRAY8") == true, "got: \(error ?? "nil")")
    }

    /// No model and no prompt: frames pass through, and the bus says so once as a warning.
    func testPassThroughWarnsOnce() throws {
        let p = try videoOnly(window: 2)
        p.play()
        for i in 0..<6 { p.pushVideo(solid(9, 9, 9), pts: UInt(i) * frameNs) }
        p.endVideo()
        XCTAssertEqual(p.collect().frames.count, 6)
        let warning = p.busMessage(GST_MESSAGE_WARNING, timeout: 1)
        XCTAssertTrue(warning?.contains("pass through") == true, "got: \(warning ?? "nil")")
        XCTAssertNil(p.busMessage(GST_MESSAGE_WARNING, timeout: 0.2), "warned more than once")
    }

    /// A flush in the middle of a window drops that window's frames; the stream goes on after it.
    func testFlushMidWindowDropsPendingFrames() throws {
        let p = try videoOnly(window: 8)
        p.play()
        for i in 0..<5 { p.pushVideo(solid(1, 1, 1), pts: UInt(i) * frameNs) }
        // Wait until appsrc has handed every queued frame to the element.
        let deadline = Date().addingTimeInterval(5)
        while gst_app_src_get_current_level_buffers(p.video) > 0 && Date() < deadline { usleep(10_000) }
        usleep(200_000)
        // What upstream sends on a flushing seek: flush-start and flush-stop on every sink pad, then a segment.
        let pads = [gst_element_get_static_pad(p.element, "sink")!, gst_element_get_static_pad(p.element, "mask")!]
        for pad in pads { _ = gst_pad_send_event(pad, gst_event_new_flush_start()) }
        for pad in pads { _ = gst_pad_send_event(pad, gst_event_new_flush_stop(0)) }
        var segment = GstSegment()
        gst_segment_init(&segment, GST_FORMAT_TIME)
        XCTAssertNotEqual(gst_pad_send_event(pads[0], gst_event_new_segment(&segment)), 0)
        pads.forEach { gst_object_unref($0) }
        for i in 5..<8 { p.pushVideo(solid(2, 2, 2), pts: UInt(i) * frameNs) }
        p.endVideo()
        let (frames, eos) = p.collect()
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.map(\.pts), (5..<8).map { UInt($0) * frameNs })
        XCTAssertEqual(frames.map { $0.bytes[0] }, [2, 2, 2])
    }

    /// NULL ↔ PLAYING fifty times, each run a complete stream.
    func testStateChangesFiftyTimes() throws {
        let p = try videoOnly(window: 3)
        for run in 0..<50 {
            p.play()
            for i in 0..<4 { p.pushVideo(solid(UInt8(run), 0, 0), pts: UInt(i) * frameNs) }
            p.endVideo()
            let (frames, eos) = p.collect()
            XCTAssertTrue(eos, "run \(run)")
            XCTAssertEqual(frames.count, 4, "run \(run)")
            p.stop()
        }
    }

    /// The latency query reports the window: window-size × frame duration (plus the edit time, zero here).
    func testLatencyReportsWindow() throws {
        let p = try Pipeline("""
            videotestsrc is-live=true ! video/x-raw,format=RGB,width=64,height=48,framerate=25/1 \
            ! ocdedit name=e window-size=6 ! appsink name=sink sync=false
            """)
        p.play()
        _ = gst_app_sink_try_pull_sample(p.sink, 5_000_000_000).map { gst_sample_unref($0) }
        let src = gst_element_get_static_pad(p.element, "src")!
        let query = gst_query_new_latency()!
        XCTAssertNotEqual(gst_pad_query(src, query), 0)
        var live: gboolean = 0
        var minLatency: GstClockTime = 0, maxLatency: GstClockTime = 0
        gst_query_parse_latency(query, &live, &minLatency, &maxLatency)
        XCTAssertGreaterThanOrEqual(minLatency, 6 * frameNs)
        gst_query_unref(query)
        gst_object_unref(src)
    }

    /// A real edit with the bundled model: 16 frames of 128×96 and a moving ball mask in, 16 frames out with their
    /// timestamps; the masked area changes, and every pixel beyond the feather of the mask keeps its bytes.
    func testEditsWithBundledModel() throws {
        let model = tinyModel
        let (W, H, count, feather) = (128, 96, 16, 4)
        let p = try Pipeline("""
            appsrc name=video format=time caps=\(rgbCaps(W, H)) ! ocdedit name=e window-size=8 model=\(model) \
            prompt="a blue ball" source-prompt="a red ball" steps=4 processing-size=128 feather=\(feather) ! \
            appsink name=sink sync=false \
            appsrc name=mask format=time caps=video/x-raw,format=GRAY8,width=\(W),height=\(H),framerate=25/1 ! e.mask
            """)
        p.play()
        var inputs: [[UInt8]] = [], masks: [[UInt8]] = []
        for i in 0..<count {
            let cx = 30 + 4 * i, cy = 48
            var rgb = [UInt8](repeating: 0, count: W * H * 3), m = [UInt8](repeating: 0, count: W * H)
            for y in 0..<H { for x in 0..<W {
                let k = y * W + x, inBall = (x - cx) * (x - cx) + (y - cy) * (y - cy) <= 225
                rgb[3 * k] = inBall ? 230 : UInt8((x * 2 + y) % 256)
                rgb[3 * k + 1] = inBall ? 30 : UInt8((y * 3) % 256)
                rgb[3 * k + 2] = inBall ? 30 : 90
                m[k] = inBall ? 255 : 0
            } }
            inputs.append(rgb); masks.append(m)
            p.pushMask(m, pts: UInt(i) * frameNs, duration: frameNs)
            p.pushVideo(rgb, pts: UInt(i) * frameNs)
        }
        p.endMask()
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 120)
        XCTAssertNil(p.busMessage(GST_MESSAGE_ERROR, timeout: 0.1))
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.map(\.pts), (0..<count).map { UInt($0) * frameNs })
        for (i, f) in frames.enumerated() where i < count {
            var changedInBall = 0
            let r = feather / 2
            for y in 0..<H { for x in 0..<W {
                var near = false
                for yy in max(0, y - r)...min(H - 1, y + r) {
                    for xx in max(0, x - r)...min(W - 1, x + r) where masks[i][yy * W + xx] > 0 { near = true }
                }
                let k = y * W + x
                if !near {
                    XCTAssertEqual(Array(f.bytes[(3 * k)..<(3 * k + 3)]), Array(inputs[i][(3 * k)..<(3 * k + 3)]),
                                   "frame \(i) (\(x),\(y)) changed outside the mask")
                } else if masks[i][k] > 0 && f.bytes[3 * k..<3 * k + 3] != inputs[i][3 * k..<3 * k + 3] {
                    changedInBall += 1
                }
            } }
            XCTAssertGreaterThan(changedInBall, 200, "frame \(i): the ball was not edited")
        }
    }

    /// window-overlap=2 (each window edited with the first frame and the previous window's last frame as context):
    /// frames out = frames in, each once, in order with its timestamp (its top-left byte, beyond the mask, is its
    /// index), for windows that do and do not divide the stream.
    func testWindowOverlapFramesOutEqualFramesIn() throws {
        let count = 8
        let p = try Pipeline("""
            appsrc name=video format=time caps=\(rgbCaps(w, h)) ! ocdedit name=e window-size=3 window-overlap=2 \
            model=\(tinyModel) prompt="a blue ball" source-prompt="a red ball" steps=2 processing-size=64 feather=2 \
            ! appsink name=sink sync=false \
            appsrc name=mask format=time caps=video/x-raw,format=GRAY8,width=\(w),height=\(h),framerate=25/1 ! e.mask
            """)
        p.play()
        var masks: [[UInt8]] = []
        for i in 0..<count {
            var rgb = [UInt8](repeating: 0, count: w * h * 3), m = [UInt8](repeating: 0, count: w * h)
            for k in 0..<(w * h) {
                let (x, y) = (k % w, k / w), inBall = (x - 20 - 3 * i) * (x - 20 - 3 * i) + (y - 24) * (y - 24) <= 64
                rgb[3 * k] = inBall ? 230 : UInt8((x * 4 + y) % 256)
                rgb[3 * k + 1] = UInt8((y * 5) % 256)
                rgb[3 * k + 2] = 90
                m[k] = inBall ? 255 : 0
            }
            rgb[0] = UInt8(i)
            masks.append(m)
            p.pushMask(m, pts: UInt(i) * frameNs, duration: frameNs)
            p.pushVideo(rgb, pts: UInt(i) * frameNs)
        }
        p.endMask()
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 120)
        XCTAssertNil(p.busMessage(GST_MESSAGE_ERROR, timeout: 0.1))
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.map(\.pts), (0..<count).map { UInt($0) * frameNs })
        XCTAssertEqual(frames.map { Int($0.bytes[0]) }, Array(0..<count))
        for (i, f) in frames.enumerated() {
            let changed = (0..<(w * h)).filter { masks[i][$0] > 0 && f.bytes[3 * $0] != 230 }.count
            XCTAssertGreaterThan(changed, 20, "frame \(i): the ball was not edited")
        }
    }

    /// mode=blended with the mask pad unlinked: the automatic mask decides where to edit. Every frame comes back with
    /// its timestamp, some pixels change and some keep their bytes (threshold 0.9: the bundled model's random
    /// cross-attention is nearly flat, see the README).
    func testBlendedModeWithoutMask() throws {
        let model = tinyModel
        let p = try videoOnly(window: 4, extra: """
            model=\(model) prompt="a blue ball" source-prompt="a red ball" mode=blended blend-threshold=0.9 steps=4 \
            processing-size=64 feather=2
            """)
        p.play()
        var inputs: [[UInt8]] = []
        for i in 0..<4 {
            var rgb = [UInt8](repeating: 0, count: w * h * 3)
            for k in 0..<(w * h) {
                rgb[3 * k] = UInt8((k % w) * 4 % 256)
                rgb[3 * k + 1] = UInt8((k / w) * 5 % 256)
                rgb[3 * k + 2] = UInt8((i * 40 + k) % 256)
            }
            inputs.append(rgb)
            p.pushVideo(rgb, pts: UInt(i) * frameNs)
        }
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 60)
        XCTAssertNil(p.busMessage(GST_MESSAGE_ERROR, timeout: 0.1))
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.map(\.pts), (0..<4).map { UInt($0) * frameNs })
        for (i, f) in frames.enumerated() {
            var changed = 0
            for k in 0..<(w * h) where f.bytes[(3 * k)..<(3 * k + 3)] != inputs[i][(3 * k)..<(3 * k + 3)] {
                changed += 1
            }
            XCTAssertGreaterThan(changed, 0, "frame \(i) was not edited")
            XCTAssertLessThan(changed, w * h, "frame \(i): the automatic mask covered every pixel")
        }
    }

    /// mode=reatco with a label map on the mask pad (region-words): value 1 = "blue", 2 = "ball". Every frame comes
    /// back with its timestamp; pixels away from both regions keep their bytes, the regions change.
    func testReAtCoWithLabelMap() throws {
        let p = try Pipeline("""
            appsrc name=video format=time caps=\(rgbCaps(w, h)) ! ocdedit name=e window-size=2 model=\(tinyModel) \
            prompt="a blue ball" source-prompt="a red ball" mode=reatco region-words="blue,ball" steps=4 \
            refocus-iterations=2 processing-size=64 feather=2 ! appsink name=sink sync=false \
            appsrc name=mask format=time caps=video/x-raw,format=GRAY8,width=\(w),height=\(h),framerate=25/1 ! e.mask
            """)
        p.play()
        var labels = [UInt8](repeating: 0, count: w * h)
        for y in 8..<24 { for x in 4..<20 { labels[y * w + x] = 1 } }
        for y in 24..<40 { for x in 40..<60 { labels[y * w + x] = 2 } }
        var inputs: [[UInt8]] = []
        for i in 0..<3 {
            var rgb = [UInt8](repeating: UInt8(i * 50), count: w * h * 3)
            for k in 0..<(w * h) {
                rgb[3 * k] = UInt8((k % w) * 4 % 256)
                rgb[3 * k + 1] = UInt8((k / w) * 5 % 256)
            }
            inputs.append(rgb)
            p.pushMask(labels, pts: UInt(i) * frameNs, duration: frameNs)
            p.pushVideo(rgb, pts: UInt(i) * frameNs)
        }
        p.endMask()
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 120)
        XCTAssertNil(p.busMessage(GST_MESSAGE_ERROR, timeout: 0.1))
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.map(\.pts), (0..<3).map { UInt($0) * frameNs })
        for (i, f) in frames.enumerated() {
            XCTAssertEqual(f.bytes[(3 * (46 * w + 30))...].prefix(3), inputs[i][(3 * (46 * w + 30))...].prefix(3),
                           "frame \(i): a pixel away from the regions changed")
            let changed = [12 * w + 10, 30 * w + 50].filter {
                f.bytes[(3 * $0)..<(3 * $0 + 3)] != inputs[i][(3 * $0)..<(3 * $0 + 3)]
            }
            XCTAssertEqual(changed.count, 2, "frame \(i): a region was not edited")
        }
    }

    /// mode=reatco with static regions and the mask pad unlinked; a 0/255 mask with region-words is a bus error
    /// that says the mask should be a label map, not a silent pass-through.
    func testReAtCoWithRegionsAndItsErrors() throws {
        let p = try videoOnly(window: 2, extra: """
            model=\(tinyModel) prompt="a blue ball" source-prompt="a red ball" mode=reatco \
            regions="blue ball:8,8,40,40" steps=4 refocus-iterations=1 processing-size=64 feather=2
            """)
        p.play()
        for i in 0..<2 { p.pushVideo(solid(90, 120, 150), pts: UInt(i) * frameNs) }
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 120)
        XCTAssertNil(p.busMessage(GST_MESSAGE_ERROR, timeout: 0.1))
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.count, 2)
        for f in frames {
            XCTAssertEqual(Array(f.bytes[(3 * (44 * w + 60))...].prefix(3)), [90, 120, 150])
            XCTAssertNotEqual(Array(f.bytes[(3 * (20 * w + 20))...].prefix(3)), [90, 120, 150])
        }
        let unlinked = try videoOnly(window: 2, extra: """
            model=\(tinyModel) prompt="a blue ball" mode=reatco region-words=ball steps=2 processing-size=64
            """)
        unlinked.play()
        for i in 0..<2 { unlinked.pushVideo(solid(9, 9, 9), pts: UInt(i) * frameNs) }
        unlinked.endVideo()
        let error = unlinked.busMessage(GST_MESSAGE_ERROR, timeout: 60)
        XCTAssertTrue(error?.contains("label map") == true, "got: \(error ?? "nil")")
    }

    /// A model folder that does not exist is a bus error naming it, not a crash or a hang.
    func testMissingModelIsABusError() throws {
        let p = try videoOnly(window: 2, extra: "model=/nonexistent/sd prompt=cat")
        p.play()
        for i in 0..<2 { p.pushVideo(solid(9, 9, 9), pts: UInt(i) * frameNs) }
        p.endVideo()
        let error = p.busMessage(GST_MESSAGE_ERROR, timeout: 20)
        XCTAssertTrue(error?.contains("/nonexistent/sd") == true, "got: \(error ?? "nil")")
    }
}
