// The ocdedit element: windows of video frames, each with the newest mask at or before it (by running time),
// edited on a worker thread while the next window fills, pushed downstream with their original timestamps.
import Foundation
import CGStreamer
import CGstShim
import WindowEditor

/// A thread-safe boolean. As `cancel`: set by FLUSH_START and stop, read by the editor between steps.
final class CancelFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set(_ v: Bool) { lock.withLock { value = v } }
}

/// One window on its way through the worker.
final class WindowJob: @unchecked Sendable {
    let buffers: [BufferRef]
    let masks: [Mask]
    let layout: VideoLayout
    let settings: EditorSettings
    let done = DispatchSemaphore(value: 0)
    /// Edited buffers (nil = push the input buffer unchanged); filled by the worker.
    var outputs: [UnsafeMutablePointer<GstBuffer>?] = []
    var error: Error?
    var seconds = 0.0

    init(buffers: [BufferRef], masks: [Mask], layout: VideoLayout, settings: EditorSettings) {
        self.buffers = buffers
        self.masks = masks
        self.layout = layout
        self.settings = settings
    }

    deinit { for case let b? in outputs { gst_buffer_unref(b) } }
}

/// What the element is doing (kept apart from `Settings`, what the user asked for).
struct State {
    var videoLayout: VideoLayout?
    var maskLayout: VideoLayout?
    var window: [(buffer: BufferRef, mask: Mask?)] = []
    var lastMask: Mask?
    var inFlight: WindowJob?
    var frameDuration: GstClockTime = 0
    var processingEstimate: GstClockTime = 0
    var reportedLatency: GstClockTime = GstClockTime.max
}

struct EditorError: Error, CustomStringConvertible {
    let description: String
}

final class OCDEdit: @unchecked Sendable {
    let aggregator: UnsafeMutablePointer<GstAggregator>
    let videoPad: UnsafeMutablePointer<GstAggregatorPad>
    let maskPad: UnsafeMutablePointer<GstAggregatorPad>

    private let settingsLock = NSLock()
    private var settings = Settings()
    private var state = State()
    /// Held by `aggregate` (source thread) and by flush/start/stop, which may come from streaming threads.
    private let stateLock = NSRecursiveLock()
    private let cancel = CancelFlag()
    /// The unlinked mask pad has been sent its fallback EOS (since start or the last flush).
    private let maskFallbackSent = CancelFlag()
    private let worker = DispatchQueue(label: "ocdedit.worker")
    /// Touched on the worker only.
    private var editor: (settings: EditorSettings, editor: WindowEditing)?
    private var rejectedCaps = Set<String>()

    init(aggregator: UnsafeMutablePointer<GstAggregator>, videoPad: UnsafeMutablePointer<GstAggregatorPad>,
         maskPad: UnsafeMutablePointer<GstAggregatorPad>) {
        self.aggregator = aggregator
        self.videoPad = videoPad
        self.maskPad = maskPad
    }

    private var element: UnsafeMutablePointer<GstElement> { UnsafeMutableRawPointer(aggregator).assumingMemoryBound(to: GstElement.self) }
    private func pad(_ p: UnsafeMutablePointer<GstAggregatorPad>) -> UnsafeMutablePointer<GstPad> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: GstPad.self)
    }

    func post(error text: String, domain: GQuark = gst_stream_error_quark(), code: Int32 = Int32(GST_STREAM_ERROR_FAILED.rawValue)) {
        ocd_post_message(element, GST_MESSAGE_ERROR, domain, code, text, nil)
    }
    func post(warning text: String) {
        ocd_post_message(element, GST_MESSAGE_WARNING, gst_stream_error_quark(), Int32(GST_STREAM_ERROR_FAILED.rawValue), text, nil)
    }

    // MARK: properties

    func setProperty(_ id: Int, _ value: UnsafePointer<GValue>) {
        guard propertyTable.indices.contains(id - 1) else { return }
        let windowChanged: Bool = settingsLock.withLock {
            let before = settings.windowSize
            propertyTable[id - 1].set(&settings, value)
            return before != settings.windowSize
        }
        if windowChanged { updateLatency() }
    }

    func getProperty(_ id: Int, _ value: UnsafeMutablePointer<GValue>) {
        guard propertyTable.indices.contains(id - 1) else { return }
        let s = settingsLock.withLock { settings }
        propertyTable[id - 1].get(s, value)
    }

    private var currentSettings: Settings { settingsLock.withLock { settings } }

    // MARK: lifecycle

    func start() -> Bool {
        cancel.set(true)
        stateLock.lock(); defer { stateLock.unlock() }
        finishInFlight()
        state = State()
        cancel.set(false)
        rejectedCaps = []
        return true
    }

    func stop() -> Bool {
        cancel.set(true)
        stateLock.lock(); defer { stateLock.unlock() }
        finishInFlight()
        state = State()
        cancel.set(false)
        maskFallbackSent.set(false)
        return true
    }

    /// The aggregator's flush (after a flushing seek): see `dropPendingWork`.
    func flush() -> GstFlowReturn {
        dropPendingWork()
        if let parentFlush = OCDEditType.parentClass.pointee.flush { return parentFlush(aggregator) }
        return GST_FLOW_OK
    }

    /// FLUSH_STOP: drop the window being filled and the one being edited (told to cancel at FLUSH_START).
    private func dropPendingWork() {
        cancel.set(true)
        stateLock.lock(); defer { stateLock.unlock() }
        finishInFlight()
        state.window = []
        state.lastMask = nil
        cancel.set(false)
    }

    /// Cancels the window on the worker, waits for it and drops its output.
    private func finishInFlight() {
        guard let job = state.inFlight else { return }
        cancel.set(true)
        job.done.wait()
        state.inFlight = nil
    }

    // MARK: events and queries

    func sinkEventPreQueue(_ aggPad: UnsafeMutablePointer<GstAggregatorPad>, _ event: UnsafeMutablePointer<GstEvent>) -> GstFlowReturn {
        let type = event.pointee.type
        if aggPad == videoPad && type == GST_EVENT_FLUSH_START {
            cancel.set(true)
        }
        if aggPad == maskPad && type == GST_EVENT_FLUSH_STOP { maskFallbackSent.set(false) }
        // An unlinked mask pad would stall the aggregator forever (it waits for data on every pad): at the video
        // stream's first event after start or a flush, mark the mask pad EOS, so every frame gets the documented
        // fallback (the whole frame is foreground).
        if aggPad == videoPad && (type == GST_EVENT_STREAM_START || type == GST_EVENT_SEGMENT || type == GST_EVENT_EOS)
            && ocd_pad_is_linked(pad(maskPad)) == 0 && !maskFallbackSent.isSet {
            maskFallbackSent.set(true)
            let m = pad(maskPad)
            _ = gst_pad_send_event(m, gst_event_new_stream_start("ocdedit-mask-unlinked"))
            var segment = GstSegment()
            gst_segment_init(&segment, GST_FORMAT_TIME)
            _ = gst_pad_send_event(m, gst_event_new_segment(&segment))
            _ = gst_pad_send_event(m, gst_event_new_eos())
        }
        return OCDEditType.parentClass.pointee.sink_event_pre_queue!(aggregator, aggPad, event)
    }

    func sinkEvent(_ aggPad: UnsafeMutablePointer<GstAggregatorPad>, _ event: UnsafeMutablePointer<GstEvent>) -> Bool {
        // The aggregator calls `flush` only for flushing seeks it started; a flush from upstream ends here.
        if aggPad == videoPad && event.pointee.type == GST_EVENT_FLUSH_STOP { dropPendingWork() }
        if event.pointee.type == GST_EVENT_CAPS {
            stateLock.lock(); defer { stateLock.unlock() }
            var caps: UnsafeMutablePointer<GstCaps>?
            gst_event_parse_caps(event, &caps)
            if let caps {
                let layout = VideoLayout(caps: caps, mask: aggPad == maskPad)
                if aggPad == videoPad {
                    guard let layout else {
                        post(error: "sink pad: caps \(capsString(caps)) not accepted, expected video/x-raw with format RGB, RGBA, BGRx or I420")
                        gst_event_unref(event)
                        return false
                    }
                    state.videoLayout = layout
                    let fpsN = layout.info.fps_n, fpsD = layout.info.fps_d
                    state.frameDuration = fpsN > 0 ? gst_util_uint64_scale_int(GstClockTime(1_000_000_000), fpsD, fpsN) : 0
                    gst_aggregator_set_src_caps(aggregator, caps)
                    updateLatency()
                } else {
                    guard let layout else {
                        post(error: "mask pad: caps \(capsString(caps)) not accepted, expected video/x-raw,format=GRAY8")
                        gst_event_unref(event)
                        return false
                    }
                    state.maskLayout = layout
                }
            }
        }
        return OCDEditType.parentClass.pointee.sink_event!(aggregator, aggPad, event) != 0
    }

    func sinkQuery(_ aggPad: UnsafeMutablePointer<GstAggregatorPad>, _ query: UnsafeMutablePointer<GstQuery>) -> Bool {
        let result = OCDEditType.parentClass.pointee.sink_query!(aggregator, aggPad, query) != 0
        if query.pointee.type == GST_QUERY_ACCEPT_CAPS {
            var caps: UnsafeMutablePointer<GstCaps>?
            var accepted: gboolean = 0
            gst_query_parse_accept_caps(query, &caps)
            gst_query_parse_accept_caps_result(query, &accepted)
            if let caps, !(result && accepted != 0) {
                let text = capsString(caps)
                let message = aggPad == maskPad
                    ? "mask pad: caps \(text) not accepted, expected video/x-raw,format=GRAY8"
                    : "sink pad: caps \(text) not accepted, expected video/x-raw with format RGB, RGBA, BGRx or I420"
                if rejectedCaps.insert(message).inserted {
                    post(error: message, code: Int32(GST_STREAM_ERROR_FORMAT.rawValue))
                }
            }
        }
        return result
    }

    func updateSrcCaps(_ downstream: UnsafeMutablePointer<GstCaps>?, _ ret: UnsafeMutablePointer<UnsafeMutablePointer<GstCaps>?>) -> GstFlowReturn {
        guard let current = gst_pad_get_current_caps(pad(videoPad)) else {
            // A stream that ends before any caps (EOS with zero frames): any caps do, no buffer will follow.
            if gst_aggregator_pad_is_eos(videoPad) != 0, let downstream {
                ret.pointee = gst_caps_fixate(gst_caps_ref(downstream))
                return GST_FLOW_OK
            }
            return GST_FLOW_CUSTOM_ERROR // GST_AGGREGATOR_FLOW_NEED_DATA
        }
        ret.pointee = current
        return GST_FLOW_OK
    }

    private func capsString(_ caps: UnsafeMutablePointer<GstCaps>) -> String {
        guard let s = gst_caps_to_string(caps) else { return "(unknown)" }
        defer { g_free(s) }
        return String(cString: s)
    }

    /// Latency: a whole window must arrive before its first frame leaves, plus the time an edit takes.
    private func updateLatency() {
        let window = GstClockTime(currentSettings.windowSize)
        let latency = window * state.frameDuration + state.processingEstimate
        guard latency != state.reportedLatency else { return }
        state.reportedLatency = latency
        gst_aggregator_set_latency(aggregator, latency, latency)
    }

    // MARK: aggregation

    private func runningTime(_ p: UnsafeMutablePointer<GstAggregatorPad>, _ pts: GstClockTime) -> GstClockTime {
        guard pts != GstClockTime.max else { return pts }
        if p.pointee.segment.format == GST_FORMAT_TIME {
            return gst_segment_to_running_time(&p.pointee.segment, GST_FORMAT_TIME, pts)
        }
        return pts
    }

    func aggregate(timeout: Bool) -> GstFlowReturn {
        stateLock.lock(); defer { stateLock.unlock() }
        if let job = state.inFlight, job.done.wait(timeout: .now()) == .success {
            state.inFlight = nil
            let r = push(job)
            if r != GST_FLOW_OK { return r }
        }
        guard let peeked = gst_aggregator_pad_peek_buffer(videoPad) else {
            if gst_aggregator_pad_is_eos(videoPad) != 0 { return drain() }
            return GST_FLOW_OK // nothing consumed: the aggregator waits for more data
        }
        let frame = BufferRef(owning: peeked)
        let frameTime = runningTime(videoPad, frame.pts)

        // Masks up to this frame's running time: keep the newest; a later mask stays queued for later frames.
        var upcoming: Mask?
        while true {
            if let m = gst_aggregator_pad_peek_buffer(maskPad) {
                let maskBuffer = BufferRef(owning: m)
                let maskTime = runningTime(maskPad, maskBuffer.pts)
                if frameTime == GstClockTime.max || maskTime == GstClockTime.max || maskTime <= frameTime {
                    _ = gst_aggregator_pad_drop_buffer(maskPad)
                    if let mask = state.maskLayout?.readMask(maskBuffer.buffer) { state.lastMask = mask }
                    continue
                }
                if state.lastMask == nil { upcoming = state.maskLayout?.readMask(maskBuffer.buffer) }
                break
            }
            if gst_aggregator_pad_is_eos(maskPad) != 0 { break }
            return GST_FLOW_OK // nothing more consumed: wait for the mask stream to reach this frame
        }
        _ = gst_aggregator_pad_drop_buffer(videoPad)
        // Fallbacks: before the first mask, the first mask; with no mask at all, nil = the whole frame.
        state.window.append((frame, state.lastMask ?? upcoming))
        if state.window.count >= currentSettings.windowSize { return dispatchWindow() }
        return GST_FLOW_OK
    }

    /// EOS on the video pad: edit the partial window, push everything, end the stream.
    private func drain() -> GstFlowReturn {
        if !state.window.isEmpty {
            let r = dispatchWindow()
            if r != GST_FLOW_OK { return r }
        }
        if let job = state.inFlight {
            job.done.wait()
            state.inFlight = nil
            let r = push(job)
            if r != GST_FLOW_OK { return r }
        }
        return GST_FLOW_EOS
    }

    /// Hands the filled window to the worker, after pushing the previous one (one window in flight at most).
    private func dispatchWindow() -> GstFlowReturn {
        if let previous = state.inFlight {
            previous.done.wait()
            state.inFlight = nil
            let r = push(previous)
            if r != GST_FLOW_OK { return r }
        }
        guard let layout = state.videoLayout else {
            post(error: "sink pad: buffers arrived before caps")
            return GST_FLOW_NOT_NEGOTIATED
        }
        let job = WindowJob(buffers: state.window.map(\.buffer),
                            masks: state.window.map { $0.mask ?? Mask.full(width: layout.width, height: layout.height) },
                            layout: layout, settings: currentSettings.editor)
        state.window = []
        state.inFlight = job
        worker.async { [self] in run(job) }
        return GST_FLOW_OK
    }

    /// Worker thread: convert, edit, convert back.
    private func run(_ job: WindowJob) {
        let start = DispatchTime.now()
        defer {
            job.seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
            job.done.signal()
        }
        do {
            if cancel.isSet { throw EditCancelled() }
            let editor = try editor(for: job.settings)
            if editor is PassthroughEditor { job.outputs = job.buffers.map { _ in nil }; return }
            let frames = try job.buffers.map { b -> Frame in
                guard let f = job.layout.readFrame(b.buffer) else { throw EditorError(description: "could not map an input frame for reading") }
                return f
            }
            let masks = zip(frames, job.masks).map { $1.scaled(width: $0.width, height: $0.height) }
            let cancel = self.cancel
            let edited = try editor.edit(frames: frames, masks: masks, isCancelled: { cancel.isSet })
            guard edited.count == frames.count else {
                throw EditorError(description: "editor returned \(edited.count) frames for a window of \(frames.count)")
            }
            job.outputs = try zip(edited, zip(frames, job.buffers)).map { out, input in
                if out == input.0 { return nil }
                guard out.format == input.0.format, out.width == input.0.width, out.height == input.0.height,
                      let b = job.layout.writeFrame(out, like: input.1.buffer) else {
                    throw EditorError(description: "editor returned a frame of another format or size")
                }
                return b
            }
        } catch {
            job.error = error
        }
    }

    private func editor(for settings: EditorSettings) throws -> WindowEditing {
        if let cached = editor, cached.settings == settings { return cached.editor }
        let made = try EditorFactory.make(settings: settings)
        if let warning = made.warning { post(warning: warning) }
        editor = (settings, made.editor)
        return made.editor
    }

    /// Source thread: push a finished window downstream (or report its error).
    private func push(_ job: WindowJob) -> GstFlowReturn {
        if let error = job.error {
            if error is EditCancelled { return GST_FLOW_FLUSHING }
            post(error: "editing a window failed: \(error)", domain: gst_library_error_quark(),
                 code: Int32(GST_LIBRARY_ERROR_FAILED.rawValue))
            return GST_FLOW_ERROR
        }
        for i in job.buffers.indices {
            let out: UnsafeMutablePointer<GstBuffer>
            if i < job.outputs.count, let edited = job.outputs[i] {
                out = edited
                job.outputs[i] = nil
            } else {
                out = gst_buffer_ref(job.buffers[i].buffer)
            }
            let r = gst_aggregator_finish_buffer(aggregator, out)
            if r != GST_FLOW_OK { return r }
        }
        let estimate = GstClockTime(job.seconds * 1e9)
        if estimate > state.processingEstimate {
            state.processingEstimate = estimate
            updateLatency()
        }
        return GST_FLOW_OK
    }
}
