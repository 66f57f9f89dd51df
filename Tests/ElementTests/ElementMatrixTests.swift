// The bad-input matrix for streams (issue 15): each case asserts its outcome — every frame out once, an error naming
// the problem, or the documented fallback. The table is docs/reliability.md, "Streams and the element".
import Foundation
import XCTest
import CGStreamer
import CGstApp

final class ElementMatrixTests: XCTestCase {
    let (w, h) = (64, 48)
    let tinyModel = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tiny-sd1").path
    let none = UInt(GstClockTime.max)

    func gray(_ w: Int, _ h: Int, fps: String = "25/1") -> String {
        "video/x-raw,format=GRAY8,width=\(w),height=\(h),framerate=\(fps)"
    }

    /// A 64×48 GRAY8 mask lighting columns 4k…4k+3.
    func stripe(_ k: Int) -> [UInt8] { stripeMask(k, width: w, height: h) }

    /// Columns of row 10 that preview-mask tinted (input bytes all 100).
    func tintedColumns(_ f: OutputFrame) -> [Int] { previewTintedColumns(f, width: w) }

    func previewPipeline(window: Int = 2, maskCaps: String? = nil) throws -> Pipeline {
        try Pipeline("""
            appsrc name=video format=time caps=\(rgbCaps(w, h)) ! ocdedit name=e window-size=\(window) \
            preview-mask=true ! appsink name=sink sync=false \
            appsrc name=mask format=time caps=\(maskCaps ?? gray(w, h)) ! e.mask
            """)
    }

    /// Buffers without timestamps (video and mask): every frame comes out once, in order, still without a timestamp;
    /// each frame takes every mask queued so far (no running time to compare).
    func testBuffersWithoutTimestamps() throws {
        let p = try previewPipeline(window: 3)
        p.play()
        p.pushMask(stripe(2), pts: none, duration: none)
        p.endMask()
        for _ in 0..<7 { p.pushVideo([UInt8](repeating: 100, count: w * h * 3), pts: none, duration: none) }
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 10)
        XCTAssertTrue(eos)
        XCTAssertNil(p.busMessage(GST_MESSAGE_ERROR, timeout: 0))
        XCTAssertEqual(frames.map(\.pts), [UInt](repeating: none, count: 7))
        for f in frames { XCTAssertEqual(tintedColumns(f), Array(8..<12)) }
    }

    /// framerate=0/1 (variable rate): frames pass once each with their timestamps; the latency has no frame duration.
    func testFramerateZero() throws {
        let p = try Pipeline("""
            appsrc name=video format=time caps=\(rgbCaps(w, h, fps: "0/1")) ! ocdedit name=e window-size=2 \
            ! appsink name=sink sync=false
            """)
        p.play()
        for i in 0..<5 { p.pushVideo([UInt8](repeating: UInt8(i), count: w * h * 3), pts: UInt(i) * 33_000_000) }
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 10)
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.map(\.pts), (0..<5).map { UInt($0) * 33_000_000 })
        XCTAssertEqual(frames.map { $0.bytes[0] }, [0, 1, 2, 3, 4])
    }

    /// 1×1, 3×5 and 17×9 in RGB and I420 (odd sizes: padded rows, odd chroma), pass-through and preview-mask with a
    /// mask of another size: every frame comes out once at its size; pass-through keeps the bytes, preview changes
    /// them (the all-white mask covers every pixel).
    func testTinyAndOddSizes() throws {
        for format in ["RGB", "I420"] {
            for (fw, fh) in [(1, 1), (3, 5), (17, 9)] {
                for preview in [false, true] {
                    let label = "\(format) \(fw)×\(fh) preview=\(preview)"
                    let caps = rgbCaps(fw, fh, format: format)
                    let p = try Pipeline("""
                        appsrc name=video format=time caps=\(caps) ! ocdedit name=e window-size=2 \
                        preview-mask=\(preview) ! appsink name=sink sync=false \
                        appsrc name=mask format=time caps=\(gray(4, 4)) ! e.mask
                        """)
                    p.play()
                    p.pushMask([UInt8](repeating: 255, count: 16), pts: 0, duration: frameNs)
                    p.endMask()
                    let input = [UInt8](repeating: 100, count: frameSize(caps))
                    for i in 0..<3 { p.pushVideo(input, pts: UInt(i) * frameNs) }
                    p.endVideo()
                    let (frames, eos) = p.collect(timeout: 10)
                    XCTAssertTrue(eos, label)
                    XCTAssertNil(p.busMessage(GST_MESSAGE_ERROR, timeout: 0), label)
                    XCTAssertEqual(frames.map(\.pts), (0..<3).map { UInt($0) * frameNs }, label)
                    XCTAssertEqual(frames.map(\.width), [fw, fw, fw], label)
                    for f in frames {
                        XCTAssertEqual(f.bytes.count, input.count, label)
                        if preview { XCTAssertNotEqual(f.bytes, input, label) } else { XCTAssertEqual(f.bytes, input) }
                    }
                }
            }
        }
    }

    /// window-size=64 (the largest) with 70 frames: one full window and a partial one, every frame once, in order.
    func testWindowSize64() throws {
        let p = try Pipeline("""
            appsrc name=video format=time caps=\(rgbCaps(16, 16)) ! ocdedit name=e window-size=64 \
            ! appsink name=sink sync=false
            """)
        p.play()
        for i in 0..<70 { p.pushVideo([UInt8](repeating: UInt8(i), count: 16 * 16 * 3), pts: UInt(i) * frameNs) }
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 10)
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.map(\.pts), (0..<70).map { UInt($0) * frameNs })
        XCTAssertEqual(frames.map { $0.bytes[0] }, (0..<70).map { UInt8($0) })
    }

    /// Video EOS before any frame while masks flow: EOS downstream, no frame, no error.
    func testVideoEOSWithZeroFramesAndAMask() throws {
        let p = try previewPipeline()
        p.play()
        for k in 0..<3 { p.pushMask(stripe(k), pts: UInt(k) * frameNs, duration: frameNs) }
        p.endMask()
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 10)
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.count, 0)
        XCTAssertNil(p.busMessage(GST_MESSAGE_ERROR, timeout: 0))
    }

    /// The mask stream ends before the video: the last mask stays in force for every later frame.
    func testMaskEOSBeforeVideo() throws {
        let p = try previewPipeline()
        p.play()
        p.pushMask(stripe(0), pts: 0, duration: frameNs)
        p.pushMask(stripe(1), pts: frameNs, duration: frameNs)
        p.endMask()
        for i in 0..<6 { p.pushVideo([UInt8](repeating: 100, count: w * h * 3), pts: UInt(i) * frameNs) }
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 10)
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.map(tintedColumns), [Array(0..<4)] + [[Int]](repeating: Array(4..<8), count: 5))
    }

    /// The mask stream starts later than the video: frames before the first mask take the first mask, later frames
    /// the newest mask at or before them.
    func testMaskStartingLaterThanVideo() throws {
        let p = try previewPipeline()
        p.play()
        p.pushMask(stripe(1), pts: 3 * frameNs, duration: 2 * frameNs)
        p.pushMask(stripe(2), pts: 5 * frameNs, duration: 2 * frameNs)
        p.endMask()
        for i in 0..<7 { p.pushVideo([UInt8](repeating: 100, count: w * h * 3), pts: UInt(i) * frameNs) }
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 10)
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.map(tintedColumns), [1, 1, 1, 1, 1, 2, 2].map { Array((4 * $0)..<(4 * $0 + 4)) })
    }

    /// An all-black mask with a model set: nothing to edit, every frame keeps its bytes (the model never runs); with
    /// preview-mask nothing is tinted.
    func testAllBlackMaskLeavesFramesUntouched() throws {
        for extra in ["model=\(tinyModel) prompt=\"a ball\" processing-size=64 steps=1", "preview-mask=true"] {
            let p = try Pipeline("""
                appsrc name=video format=time caps=\(rgbCaps(w, h)) ! ocdedit name=e window-size=3 \(extra) \
                ! appsink name=sink sync=false \
                appsrc name=mask format=time caps=\(gray(w, h)) ! e.mask
                """)
            p.play()
            let input = (0..<(w * h * 3)).map { UInt8(truncatingIfNeeded: $0 * 13) }
            for i in 0..<4 {
                p.pushMask([UInt8](repeating: 0, count: w * h), pts: UInt(i) * frameNs, duration: frameNs)
                p.pushVideo(input, pts: UInt(i) * frameNs)
            }
            p.endMask()
            p.endVideo()
            let (frames, eos) = p.collect(timeout: 30)
            XCTAssertTrue(eos, extra)
            XCTAssertNil(p.busMessage(GST_MESSAGE_ERROR, timeout: 0), extra)
            XCTAssertEqual(frames.count, 4, extra)
            for f in frames { XCTAssertEqual(f.bytes, input, extra) }
        }
    }

    /// An all-white mask: preview-mask tints every pixel of every frame.
    func testAllWhiteMaskTintsEveryPixel() throws {
        let p = try previewPipeline()
        p.play()
        p.pushMask([UInt8](repeating: 255, count: w * h), pts: 0, duration: frameNs)
        p.endMask()
        for i in 0..<3 { p.pushVideo([UInt8](repeating: 100, count: w * h * 3), pts: UInt(i) * frameNs) }
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 10)
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.count, 3)
        for f in frames {
            XCTAssertEqual((0..<(w * h)).filter { f.bytes[$0 * 3] == 100 }, [], "untinted pixels")
        }
    }

    /// A mask of another size and rate (32×24 at 10 fps for 64×48 at 25 fps) is scaled and matched by running time;
    /// the other mask cases of this kind are in ElementTests (testMaskMatchedByRunningTime,
    /// testWrongMaskCapsGiveBusError). Here: a mask of a different aspect (8×48) lands on the right columns.
    func testMaskOfAnotherAspectIsScaled() throws {
        let p = try previewPipeline(maskCaps: gray(8, 48, fps: "5/1"))
        p.play()
        var m = [UInt8](repeating: 0, count: 8 * 48)
        for y in 0..<48 { m[y * 8 + 3] = 255 } // column 3 of 8 = columns 24…31 of 64
        p.pushMask(m, pts: 0, duration: 200_000_000)
        p.endMask()
        for i in 0..<3 { p.pushVideo([UInt8](repeating: 100, count: w * h * 3), pts: UInt(i) * frameNs) }
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 10)
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.map(tintedColumns), [[Int]](repeating: Array(24..<32), count: 3))
        // The mask's caps never go downstream: every frame is labelled with the video's caps.
        XCTAssertEqual(frames.map(\.width), [64, 64, 64])
        XCTAssertEqual(frames.map(\.height), [48, 48, 48])
    }

    /// A flush while a window is being edited (400 steps: about 40 s with the tiny model here) cancels the edit
    /// between diffusion steps: the flush returns within seconds, the cancelled window never comes out, and the
    /// stream goes on after it.
    func testFlushDuringARunningEdit() throws {
        let p = try Pipeline("""
            appsrc name=video format=time caps=\(rgbCaps(w, h)) ! ocdedit name=e window-size=2 model=\(tinyModel) \
            prompt="a blue ball" steps=400 strength=1 processing-size=128 ! appsink name=sink sync=false
            """)
        p.play()
        for i in 0..<2 { p.pushVideo([UInt8](repeating: 1, count: w * h * 3), pts: UInt(i) * frameNs) }
        let deadline = Date().addingTimeInterval(5)
        while gst_app_src_get_current_level_buffers(p.video) > 0 && Date() < deadline { usleep(10_000) }
        usleep(1_000_000) // the window is being edited now
        let start = Date()
        let pads = [gst_element_get_static_pad(p.element, "sink")!, gst_element_get_static_pad(p.element, "mask")!]
        for pad in pads { _ = gst_pad_send_event(pad, gst_event_new_flush_start()) }
        for pad in pads { _ = gst_pad_send_event(pad, gst_event_new_flush_stop(0)) }
        let flushSeconds = Date().timeIntervalSince(start)
        var segment = GstSegment()
        gst_segment_init(&segment, GST_FORMAT_TIME)
        XCTAssertNotEqual(gst_pad_send_event(pads[0], gst_event_new_segment(&segment)), 0)
        pads.forEach { gst_object_unref($0) }
        XCTAssertLessThan(flushSeconds, 5, "the flush waited for the edit")
        gst_util_set_object_arg(UnsafeMutableRawPointer(p.element).assumingMemoryBound(to: GObject.self),
                                "preview-mask", "true")
        for i in 2..<4 { p.pushVideo([UInt8](repeating: 2, count: w * h * 3), pts: UInt(i) * frameNs) }
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 30)
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.map(\.pts), [2 * frameNs, 3 * frameNs])
    }

    /// NULL ↔ PLAYING a hundred times, each run a complete stream (with a mask linked, ended in every run).
    func testStateChangesHundredTimesWithMask() throws {
        let p = try previewPipeline(window: 3)
        for run in 0..<100 {
            p.play()
            p.pushMask(stripe(run % 16), pts: 0, duration: frameNs)
            p.endMask()
            for i in 0..<4 { p.pushVideo([UInt8](repeating: 100, count: w * h * 3), pts: UInt(i) * frameNs) }
            p.endVideo()
            let (frames, eos) = p.collect(timeout: 10)
            XCTAssertTrue(eos, "run \(run)")
            XCTAssertEqual(frames.map(tintedColumns),
                           [[Int]](repeating: Array((4 * (run % 16))..<(4 * (run % 16) + 4)), count: 4), "run \(run)")
            p.stop()
            if frames.count != 4 { break }
        }
    }
}
