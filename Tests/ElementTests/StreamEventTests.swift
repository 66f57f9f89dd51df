// Caps changes, segments, GAP events and flow errors: what goes downstream, in which order (docs/reliability.md).
import Foundation
import XCTest
import CGStreamer
import CGstApp

final class StreamEventTests: XCTestCase {
    let tinyModel = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tiny-sd1").path

    func filled(_ caps: String, _ value: UInt8) -> [UInt8] {
        [UInt8](repeating: value, count: frameSize(caps))
    }

    /// `ocdedit name=e … ! appsink name=sink`, fed by the test through a `PadFeeder`.
    func fedPipeline(_ properties: String) throws -> (Pipeline, StreamRecorder) {
        let p = try Pipeline("ocdedit name=e \(properties) ! appsink name=sink sync=false")
        let recorder = StreamRecorder(p.element)
        p.play()
        return (p, recorder)
    }

    /// Lines of a recorded stream without repeats of the segment in force (they change nothing downstream; the element
    /// sends the segment itself before a gap, and the aggregator sends it again before the next buffer).
    func folded(_ lines: [String]) -> [String] {
        var out: [String] = []
        var current: String?
        for line in lines {
            if line.hasPrefix("segment") {
                if line == current { continue }
                current = line
            }
            out.append(line)
        }
        return out
    }

    /// A caps change in the middle of a window: the frames queued under the old caps leave first, with the old caps
    /// and their own bytes; the new caps go downstream after them and before the first new frame. Both directions
    /// (large to small, small to large), pass-through and preview-mask (which maps every frame), windows of 1 and 3.
    func testCapsChangeMidWindowKeepsEachWindowsCaps() throws {
        for extra in ["", "preview-mask=true"] {
            for window in [1, 3] {
                for (a, b) in [((64, 48), (32, 24)), ((32, 24), (64, 48))] {
                    let label = "\(extra) window \(window) \(a)→\(b)"
                    let (p, recorder) = try fedPipeline("window-size=\(window) \(extra)")
                    let capsA = rgbCaps(a.0, a.1), capsB = rgbCaps(b.0, b.1)
                    let feeder = PadFeeder(p.element)
                    XCTAssertTrue(feeder.caps(capsA), label)
                    feeder.segment()
                    for i in 0..<4 {
                        XCTAssertEqual(feeder.push(filled(capsA, 50), pts: UInt(i) * frameNs), GST_FLOW_OK, label)
                    }
                    XCTAssertTrue(feeder.caps(capsB), label)
                    for i in 4..<7 {
                        XCTAssertEqual(feeder.push(filled(capsB, 60), pts: UInt(i) * frameNs), GST_FLOW_OK, label)
                    }
                    feeder.eos()
                    let (frames, eos) = p.collect(timeout: 10)
                    XCTAssertTrue(eos, label)
                    XCTAssertNil(p.busMessage(GST_MESSAGE_ERROR, timeout: 0), label)
                    XCTAssertEqual(frames.map(\.pts), (0..<7).map { UInt($0) * frameNs }, label)
                    XCTAssertEqual(frames.map(\.width), [a.0, a.0, a.0, a.0, b.0, b.0, b.0], label)
                    XCTAssertEqual(frames.map(\.bytes.count), [Int](repeating: frameSize(capsA), count: 4)
                                   + [Int](repeating: frameSize(capsB), count: 3), label)
                    let expected = ["caps \(a.0)x\(a.1)"]
                        + (0..<4).map { "buffer \(frameSize(capsA)) \($0 * 40)ms" } + ["caps \(b.0)x\(b.1)"]
                        + (4..<7).map { "buffer \(frameSize(capsB)) \($0 * 40)ms" }
                    let order = recorder.stream.filter { $0.hasPrefix("caps") || $0.hasPrefix("buffer") }
                    XCTAssertEqual(order, expected, label)
                }
            }
        }
    }

    /// The issue's case: concat of a 64×48 and a 32×24 clip. Every frame keeps its size and caps, and the second clip's
    /// segment goes downstream, so running time goes on from where the first clip ended (no repeated timestamps
    /// for a synced sink).
    func testConcatOfTwoSizesKeepsCapsAndSegments() throws {
        let p = try Pipeline("""
            concat name=c ! ocdedit name=e window-size=3 ! appsink name=sink sync=false \
            videotestsrc num-buffers=4 ! \(rgbCaps(64, 48)) ! c. \
            videotestsrc num-buffers=4 ! \(rgbCaps(32, 24)) ! c.
            """)
        p.play()
        let (frames, eos) = p.collect(timeout: 10)
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.map(\.width), [64, 64, 64, 64, 32, 32, 32, 32])
        XCTAssertEqual(frames.map(\.bytes.count), [9216, 9216, 9216, 9216, 2304, 2304, 2304, 2304])
        XCTAssertEqual(frames.map(\.runningTime), (0..<8).map { UInt($0) * frameNs })
    }

    /// Small to large with a model (it used to fail with "could not map an input frame for reading"): the partial
    /// window of 32×24 frames is edited at its size and leaves with its caps, then the 64×48 frames are edited at
    /// theirs.
    func testCapsChangeWithModelEditsEachWindowAtItsOwnSize() throws {
        let p = try Pipeline("""
            concat name=c ! ocdedit name=e window-size=2 model=\(tinyModel) prompt="a blue ball" \
            source-prompt="a ball" steps=2 processing-size=64 ! appsink name=sink sync=false \
            videotestsrc num-buffers=3 ! \(rgbCaps(32, 24)) ! c. \
            videotestsrc num-buffers=3 ! \(rgbCaps(64, 48)) ! c. \
            videotestsrc pattern=white num-buffers=6 ! video/x-raw,format=GRAY8,width=16,height=12,framerate=25/1 \
            ! e.mask
            """)
        p.play()
        let (frames, eos) = p.collect(timeout: 120)
        XCTAssertNil(p.busMessage(GST_MESSAGE_ERROR, timeout: 0))
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.map(\.width), [32, 32, 32, 64, 64, 64])
        XCTAssertEqual(frames.map(\.bytes.count), [2304, 2304, 2304, 9216, 9216, 9216])
        XCTAssertEqual(frames.map(\.runningTime), (0..<6).map { UInt($0) * frameNs })
    }

    /// A segment that arrives mid-window: the window's frames leave under the old segment, then the new segment,
    /// then the frames after it; running time follows each frame's own segment.
    func testSegmentMidWindowIsForwardedInStreamOrder() throws {
        let (p, recorder) = try fedPipeline("window-size=4")
        let caps = rgbCaps(64, 48)
        let feeder = PadFeeder(p.element)
        feeder.caps(caps)
        feeder.segment()
        for i in 0..<3 { feeder.push(filled(caps, 1), pts: UInt(i) * frameNs) }
        feeder.segment(base: 3 * frameNs)
        for i in 0..<3 { feeder.push(filled(caps, 2), pts: UInt(i) * frameNs) }
        feeder.eos()
        let (frames, eos) = p.collect(timeout: 10)
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.map(\.runningTime), (0..<6).map { UInt($0) * frameNs })
        XCTAssertEqual(frames.map { $0.bytes[0] }, [1, 1, 1, 2, 2, 2])
        let size = frameSize(caps)
        XCTAssertEqual(folded(recorder.stream), ["caps 64x48", "segment base=0ms start=0ms"]
                       + (0..<3).map { "buffer \(size) \($0 * 40)ms" } + ["segment base=120ms start=0ms"]
                       + (0..<3).map { "buffer \(size) \($0 * 40)ms" } + ["eos"])
    }

    /// Masks are matched by running time in each pad's own segment: after a second segment on both pads (timestamps
    /// starting again at 0, running time going on), frame i still takes the newest mask at or before it.
    func testMaskMatchingFollowsEachPadsSegments() throws {
        let (w, h) = (64, 48)
        let (p, _) = try fedPipeline("window-size=2 preview-mask=true")
        let video = PadFeeder(p.element, streamID: "video")
        let mask = PadFeeder(p.element, pad: "mask", streamID: "mask")
        // Mask k lights columns 4k…4k+3. Running times: masks 0 → 0 ms, 1 → 80 ms, 2 → 120 ms, 3 → 160 ms.
        let stripe: @Sendable (Int) -> [UInt8] = { stripeMask($0, width: w, height: h) }
        let maskThread = Thread {
            mask.caps("video/x-raw,format=GRAY8,width=\(w),height=\(h),framerate=25/1")
            mask.segment()
            mask.push(stripe(0), pts: 0)
            mask.push(stripe(1), pts: 2 * frameNs)
            mask.segment(base: 3 * frameNs)
            mask.push(stripe(2), pts: 0)
            mask.push(stripe(3), pts: frameNs)
            mask.eos()
        }
        maskThread.start()
        let caps = rgbCaps(w, h)
        video.caps(caps)
        video.segment()
        for i in 0..<3 { video.push(filled(caps, 100), pts: UInt(i) * frameNs) }
        video.segment(base: 3 * frameNs)
        for i in 0..<3 { video.push(filled(caps, 100), pts: UInt(i) * frameNs) }
        video.eos()
        let (frames, eos) = p.collect(timeout: 10)
        XCTAssertTrue(eos)
        XCTAssertEqual(frames.count, 6)
        let expectedMask = [0, 0, 1, 2, 3, 3]
        for (i, f) in frames.enumerated() {
            let k = expectedMask[i]
            XCTAssertEqual(previewTintedColumns(f, width: w), Array((4 * k)..<(4 * k + 4)),
                           "frame \(i) should use mask \(k)")
        }
    }

    /// GAP events on the video pad are not frames: no error, no empty buffer, and each gap goes downstream after the
    /// frames that came before it (a leading gap, one inside a window, a trailing one before EOS).
    func testGapEventIsForwardedAndNotCounted() throws {
        for extra in ["", "preview-mask=true"] {
            let (p, recorder) = try fedPipeline("window-size=3 \(extra)")
            let caps = rgbCaps(64, 48)
            let feeder = PadFeeder(p.element)
            feeder.caps(caps)
            feeder.segment()
            XCTAssertTrue(feeder.gap(pts: 0))
            for i in 1..<3 { feeder.push(filled(caps, 7), pts: UInt(i) * frameNs) }
            XCTAssertTrue(feeder.gap(pts: 3 * frameNs))
            for i in 4..<6 { feeder.push(filled(caps, 7), pts: UInt(i) * frameNs) }
            XCTAssertTrue(feeder.gap(pts: 6 * frameNs))
            feeder.eos()
            let (frames, eos) = p.collect(timeout: 10)
            XCTAssertTrue(eos, extra)
            XCTAssertNil(p.busMessage(GST_MESSAGE_ERROR, timeout: 0), extra)
            XCTAssertEqual(frames.map(\.pts), [1, 2, 4, 5].map { UInt($0) * frameNs }, extra)
            let size = frameSize(caps)
            XCTAssertEqual(folded(recorder.stream), [
                "caps 64x48", "segment base=0ms start=0ms", "gap 0ms", "buffer \(size) 40ms", "buffer \(size) 80ms",
                "gap 120ms", "buffer \(size) 160ms", "buffer \(size) 200ms", "gap 240ms", "eos",
            ], extra)
        }
    }

    /// A GAP on the mask pad is no mask: the last mask stays in force across it.
    func testGapOnMaskPadKeepsTheLastMask() throws {
        let (w, h) = (64, 48)
        let (p, _) = try fedPipeline("window-size=2 preview-mask=true")
        let video = PadFeeder(p.element, streamID: "video")
        let mask = PadFeeder(p.element, pad: "mask", streamID: "mask")
        let stripe: @Sendable (Int) -> [UInt8] = { stripeMask($0, width: w, height: h) }
        let maskThread = Thread {
            mask.caps("video/x-raw,format=GRAY8,width=\(w),height=\(h),framerate=25/1")
            mask.segment()
            mask.push(stripe(0), pts: 0)
            mask.gap(pts: frameNs)
            mask.push(stripe(1), pts: 2 * frameNs)
            mask.eos()
        }
        maskThread.start()
        let caps = rgbCaps(w, h)
        video.caps(caps)
        video.segment()
        for i in 0..<4 { video.push(filled(caps, 100), pts: UInt(i) * frameNs) }
        video.eos()
        let (frames, eos) = p.collect(timeout: 10)
        XCTAssertTrue(eos)
        XCTAssertNil(p.busMessage(GST_MESSAGE_ERROR, timeout: 0))
        let tinted = frames.map { previewTintedColumns($0, width: w) }
        XCTAssertEqual(tinted, [0, 0, 1, 1].map { Array((4 * $0)..<(4 * $0 + 4)) })
    }

    /// With a model set, a gap used to reach the editor as an empty frame ("could not map an input frame"): it must
    /// not. The mask is all black, so the window comes back untouched without the model running.
    func testGapWithModelIsNotAnError() throws {
        let p = try Pipeline("""
            ocdedit name=e window-size=2 model=\(tinyModel) prompt="a ball" steps=1 processing-size=64 \
            ! appsink name=sink sync=false
            """)
        p.play()
        let caps = rgbCaps(64, 48)
        let video = PadFeeder(p.element, streamID: "video")
        let mask = PadFeeder(p.element, pad: "mask", streamID: "mask")
        let maskThread = Thread {
            mask.caps("video/x-raw,format=GRAY8,width=64,height=48,framerate=25/1")
            mask.segment()
            mask.push([UInt8](repeating: 0, count: 64 * 48), pts: 0)
            mask.eos()
        }
        maskThread.start()
        video.caps(caps)
        video.segment()
        video.push(filled(caps, 3), pts: 0)
        video.gap(pts: frameNs)
        video.push(filled(caps, 3), pts: 2 * frameNs)
        video.eos()
        let (frames, eos) = p.collect(timeout: 30)
        XCTAssertTrue(eos)
        XCTAssertNil(p.busMessage(GST_MESSAGE_ERROR, timeout: 0))
        XCTAssertEqual(frames.map(\.pts), [0, 2 * frameNs])
    }

    /// An unlinked src pad: the aggregator only pauses its task, so a short stream used to hang with no message. Now
    /// the bus gets an error naming it, within a bounded time.
    func testUnlinkedSrcPadIsAnError() throws {
        for (frames, window) in [(3, 8), (12, 2)] {
            let p = try LaunchedPipeline("""
                videotestsrc num-buffers=\(frames) ! \(rgbCaps(64, 48)) ! ocdedit window-size=\(window)
                """)
            let (eos, error) = p.runToEnd(timeout: 10)
            XCTAssertFalse(eos, "\(frames) frames, window \(window)")
            XCTAssertNotNil(error, "\(frames) frames, window \(window): no error within 10 s")
            if frames == 3 {
                XCTAssertTrue(error?.message.contains("not linked") == true, "got: \(error?.message ?? "nil")")
            }
        }
    }

    /// Frames whose processing canvas would be past 4:1 are refused at caps with a STREAM/FORMAT error naming the
    /// size and the rule (16384×1 used to grow past 6 GB); pass-through and preview take them.
    func testExtremeAspectRatioIsRefusedWhenEditing() throws {
        for (w, h) in [(16384, 1), (1, 4096), (2400, 512)] {
            let p = try LaunchedPipeline("""
                videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=\(w),height=\(h),framerate=25/1 \
                ! ocdedit model=\(tinyModel) prompt="a ball" processing-size=64 ! fakesink
                """)
            let (eos, error) = p.runToEnd(timeout: 20)
            XCTAssertFalse(eos, "\(w)×\(h)")
            XCTAssertEqual(error?.code, Int32(GST_STREAM_ERROR_FORMAT.rawValue), "\(w)×\(h)")
            XCTAssertTrue(error?.message.contains("\(w)×\(h)") == true && error?.message.contains("4:1") == true,
                          "got: \(error?.message ?? "nil")")
        }
        for extra in ["", "preview-mask=true"] {
            let p = try LaunchedPipeline("""
                videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=16384,height=1,framerate=25/1 \
                ! ocdedit \(extra) ! fakesink
                """)
            let (eos, error) = p.runToEnd(timeout: 20)
            XCTAssertTrue(eos, "\(extra): \(error?.message ?? "")")
        }
    }

    /// A model and prompt set while 16384×1 frames pass through: the next window stops the stream with the same
    /// STREAM/FORMAT error, before any canvas is built.
    func testCanvasBoundAppliesWhenAModelIsSetWhilePlaying() throws {
        let caps = "video/x-raw,format=RGB,width=16384,height=1,framerate=25/1"
        let p = try Pipeline("""
            appsrc name=video format=time caps=\(caps) ! ocdedit name=e window-size=2 processing-size=64 \
            ! appsink name=sink sync=false
            """)
        p.play()
        let frame = [UInt8](repeating: 5, count: frameSize(caps))
        for i in 0..<2 { p.pushVideo(frame, pts: UInt(i) * frameNs) }
        var pulled = 0
        for _ in 0..<2 {
            guard let sample = gst_app_sink_try_pull_sample(p.sink, 10_000_000_000) else { break }
            pulled += 1
            gst_sample_unref(sample)
        }
        XCTAssertEqual(pulled, 2, "pass-through frames")
        p.set("model", string: tinyModel)
        p.set("prompt", string: "a ball")
        for i in 2..<4 { p.pushVideo(frame, pts: UInt(i) * frameNs) }
        p.endVideo()
        let error = p.error(timeout: 20)
        XCTAssertEqual(error?.code, Int32(GST_STREAM_ERROR_FORMAT.rawValue))
        XCTAssertTrue(error?.message.contains("4:1") == true, "got: \(error?.message ?? "nil")")
    }

    /// 3840×2160 (RGB) in pass-through and preview-mask: every frame out at its size.
    func testUHDFramesPassAndPreview() throws {
        let caps = rgbCaps(3840, 2160)
        for preview in [false, true] {
            let p = try Pipeline("""
                appsrc name=video format=time caps=\(caps) ! ocdedit name=e window-size=2 preview-mask=\(preview) \
                ! appsink name=sink sync=false
                """)
            p.play()
            let frame = [UInt8](repeating: 100, count: frameSize(caps))
            for i in 0..<2 { p.pushVideo(frame, pts: UInt(i) * frameNs) }
            p.endVideo()
            let (frames, eos) = p.collect(timeout: 60)
            XCTAssertTrue(eos, "preview=\(preview)")
            XCTAssertEqual(frames.map(\.width), [3840, 3840], "preview=\(preview)")
            XCTAssertEqual(frames.map(\.bytes.count), [frame.count, frame.count])
            if preview { XCTAssertNotEqual(frames.first?.bytes, frame, "not tinted") }
        }
    }

    /// 4:1 itself (and a little past it, which rounds to 4:1 on the 64-pixel grid) is accepted.
    func testFourToOneIsAccepted() throws {
        let p = try Pipeline("""
            appsrc name=video format=time caps=\(rgbCaps(260, 64)) ! ocdedit name=e window-size=1 \
            model=\(tinyModel) prompt="a ball" processing-size=64 ! appsink name=sink sync=false \
            appsrc name=mask format=time caps=video/x-raw,format=GRAY8,width=8,height=8,framerate=25/1 ! e.mask
            """)
        p.play()
        p.pushMask([UInt8](repeating: 0, count: 64), pts: 0, duration: frameNs)
        p.endMask()
        p.pushVideo([UInt8](repeating: 9, count: frameSize(rgbCaps(260, 64))), pts: 0)
        p.endVideo()
        let (frames, eos) = p.collect(timeout: 30)
        XCTAssertTrue(eos)
        XCTAssertNil(p.busMessage(GST_MESSAGE_ERROR, timeout: 0))
        XCTAssertEqual(frames.count, 1)
    }
}
