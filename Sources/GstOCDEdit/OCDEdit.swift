// The ocdedit element: windows of video frames, each with the newest mask at or before it (by running time),
// edited on a worker thread while the next window fills, pushed downstream with their original timestamps as soon as
// the edit ends. The model is held from READY→PAUSED to PAUSED→READY (shared through WindowEditor's ModelCache).
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

/// One window on its way through the worker, with the settings it is edited with.
final class WindowJob: @unchecked Sendable {
    /// Counts the windows since start, for the log.
    let number: Int
    let buffers: [BufferRef]
    let masks: [Mask]
    let layout: VideoLayout
    let settings: EditorSettings
    let done = DispatchSemaphore(value: 0)
    /// Edited buffers (nil = push the input buffer unchanged); filled by the worker.
    var outputs: [UnsafeMutablePointer<GstBuffer>?] = []
    var failure: EditorFailure?
    /// The edit alone: a model load before it is not a per-window cost and stays out of the latency.
    var seconds = 0.0

    init(number: Int, buffers: [BufferRef], masks: [Mask], layout: VideoLayout, settings: EditorSettings) {
        self.number = number
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
    /// Windows dispatched since start.
    var windows = 0
    /// What pushing a window from the wake-up event returned, when not OK: `aggregate` returns it next.
    var pendingFlow: GstFlowReturn?
}

/// What the latency query reports; own lock, since property changes update it from the application's thread.
struct LatencyState {
    var frameDuration: GstClockTime = 0
    var processingEstimate: GstClockTime = 0
    var reported: GstClockTime = GstClockTime.max
}

extension EditorFailure.Kind {
    /// The GStreamer error domain and code of each failure (README, "Using the element", Errors).
    var gstError: (domain: GQuark, code: Int32) {
        switch self {
        case .modelNotFound: return (gst_resource_error_quark(), Int32(GST_RESOURCE_ERROR_NOT_FOUND.rawValue))
        case .modelUnreadable: return (gst_resource_error_quark(), Int32(GST_RESOURCE_ERROR_READ.rawValue))
        case .settings: return (gst_resource_error_quark(), Int32(GST_RESOURCE_ERROR_SETTINGS.rawValue))
        case .edit, .cancelled: return (gst_library_error_quark(), Int32(GST_LIBRARY_ERROR_FAILED.rawValue))
        }
    }
}

final class OCDEdit: @unchecked Sendable {
    let aggregator: UnsafeMutablePointer<GstAggregator>
    let videoPad: UnsafeMutablePointer<GstAggregatorPad>
    let maskPad: UnsafeMutablePointer<GstAggregatorPad>

    private let settingsLock = NSLock()
    private var settings = Settings()
    private var state = State()
    /// Held by `aggregate` and the wake-up event (source thread) and by flush/start/stop, which may come from
    /// streaming threads.
    private let stateLock = NSRecursiveLock()
    private let latencyLock = NSLock()
    private var latency = LatencyState()
    private let cancel = CancelFlag()
    /// The unlinked mask pad has been sent its fallback EOS (since start or the last flush).
    private let maskFallbackSent = CancelFlag()
    private let worker = DispatchQueue(label: "ocdedit.worker")
    /// Sends the wake-up events (see `wakeAggregator`): sending may wait for a pad's stream lock, never on `worker`.
    private let waker = DispatchQueue(label: "ocdedit.waker")
    /// The held model and the editor of the last window's settings.
    private let session = EditorSession()
    private var rejectedCaps = Set<String>()
    /// Frames and edit time pushed since start, for the `progress` messages (Progress.swift).
    private let progress = WindowProgress()
    /// Name of the custom event the worker queues on a sink pad to wake the source thread (see `wakeAggregator`).
    private static let wakeEventName = "ocdedit-window-edited"

    init(aggregator: UnsafeMutablePointer<GstAggregator>, videoPad: UnsafeMutablePointer<GstAggregatorPad>,
         maskPad: UnsafeMutablePointer<GstAggregatorPad>) {
        self.aggregator = aggregator
        self.videoPad = videoPad
        self.maskPad = maskPad
    }

    private var element: UnsafeMutablePointer<GstElement> {
        UnsafeMutableRawPointer(aggregator).assumingMemoryBound(to: GstElement.self)
    }
    private func pad(_ p: UnsafeMutablePointer<GstAggregatorPad>) -> UnsafeMutablePointer<GstPad> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: GstPad.self)
    }

    func post(error text: String, domain: GQuark = gst_stream_error_quark(),
              code: Int32 = Int32(GST_STREAM_ERROR_FAILED.rawValue)) {
        ocd_post_message(element, GST_MESSAGE_ERROR, domain, code, text, nil)
    }
    func post(warning text: String) {
        ocd_post_message(element, GST_MESSAGE_WARNING, gst_stream_error_quark(),
                         Int32(GST_STREAM_ERROR_FAILED.rawValue), text, nil)
    }
    func post(_ failure: EditorFailure) {
        let (domain, code) = failure.kind.gstError
        ocd_post_message(element, GST_MESSAGE_ERROR, domain, code, failure.message, nil)
    }
    private func postProgress(_ type: GstProgressType, _ text: String) {
        let object = UnsafeMutableRawPointer(element).assumingMemoryBound(to: GstObject.self)
        _ = gst_element_post_message(element, gst_message_new_progress(object, type, "loading", text))
    }
    private func log(_ level: GstDebugLevel, _ message: @autoclosure () -> String, function: String = #function,
                     line: Int = #line) {
        Log.at(level, UnsafeMutableRawPointer(element), message(), function: function, line: line)
    }

    // MARK: properties

    /// A value the table refuses is kept out of the settings and remembered (`Settings.rejected`): the element will
    /// not start, or stops at the next window, with a RESOURCE/SETTINGS error naming it.
    func setProperty(_ id: Int, _ value: UnsafePointer<GValue>) {
        guard propertyTable.indices.contains(id - 1) else { return }
        let property = propertyTable[id - 1]
        let (windowChanged, shown, refusal): (Bool, String, String?) = settingsLock.withLock {
            let before = settings.windowSize
            var refusal: String?
            do {
                try property.set(&settings, value)
                settings.rejected[property.name] = nil
            } catch {
                refusal = "\(error)"
                settings.rejected[property.name] = refusal
            }
            return (before != settings.windowSize, property.show(settings), refusal)
        }
        if let refusal {
            log(GST_LEVEL_WARNING, "property \(property.name) refused: \(refusal) (stays \(shown))")
        } else {
            log(GST_LEVEL_INFO, "property \(property.name) = \(shown)")
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

    /// READY→PAUSED: checks the settings and holds the model (loading it unless another element in the process holds
    /// it already), so a missing model or a bad setting fails this state change before any frame flows.
    func start() -> Bool {
        cancel.set(true)
        stateLock.lock(); defer { stateLock.unlock() }
        finishInFlight()
        state = State()
        latencyLock.withLock { latency = LatencyState() }
        cancel.set(false)
        rejectedCaps = []
        progress.reset()
        let s = currentSettings
        if let rejection = s.rejection {
            post(EditorFailure(.settings, rejection))
            return false
        }
        do throws(EditorFailure) {
            try EditorSession.validate(s.editor)
            try holdModel(s.editor.modelPath)
        } catch {
            post(error)
            return false
        }
        return true
    }

    /// PAUSED→READY: drops the windows and lets the model go.
    func stop() -> Bool {
        cancel.set(true)
        stateLock.lock(); defer { stateLock.unlock() }
        finishInFlight()
        state = State()
        cancel.set(false)
        maskFallbackSent.set(false)
        session.release()
        return true
    }

    /// Holds the model of `folder` (none for nil); a load from disk is bracketed by PROGRESS start and complete (or
    /// error) messages with code `loading`, which no cache hit posts.
    private func holdModel(_ folder: String?) throws(EditorFailure) {
        var loading = false
        do {
            try session.hold(modelFolder: folder, willLoad: {
                loading = true
                log(GST_LEVEL_INFO, "loading model folder \(folder ?? "")")
                postProgress(GST_PROGRESS_TYPE_START, "Loading model folder \(folder ?? "")")
            })
        } catch {
            if loading { postProgress(GST_PROGRESS_TYPE_ERROR, error.message) }
            throw error
        }
        if loading {
            log(GST_LEVEL_INFO, "model folder \(folder ?? "") loaded")
            for warning in session.modelWarnings { log(GST_LEVEL_WARNING, warning) }
            postProgress(GST_PROGRESS_TYPE_COMPLETE, "Loaded model folder \(folder ?? "")")
        }
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
        session.forgetContext()   // window-overlap: the next window starts a new stretch
        state.lastMask = nil
        state.pendingFlow = nil
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

    func sinkEventPreQueue(_ aggPad: UnsafeMutablePointer<GstAggregatorPad>,
                           _ event: UnsafeMutablePointer<GstEvent>) -> GstFlowReturn {
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
        if event.pointee.type == GST_EVENT_CUSTOM_DOWNSTREAM, let structure = gst_event_get_structure(event),
           gst_structure_has_name(structure, OCDEdit.wakeEventName) != 0 {
            gst_event_unref(event)
            stateLock.lock(); defer { stateLock.unlock() }
            let r = pushFinished()
            if r != GST_FLOW_OK && r != GST_FLOW_FLUSHING { state.pendingFlow = r }
            return true
        }
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
                        post(error: "sink pad: caps \(capsString(caps)) not accepted, expected video/x-raw with "
                                    + "format RGB, RGBA, BGRx or I420", code: Int32(GST_STREAM_ERROR_FORMAT.rawValue))
                        gst_event_unref(event)
                        return false
                    }
                    state.videoLayout = layout
                    let fpsN = layout.info.fps_n, fpsD = layout.info.fps_d
                    let duration = fpsN > 0 ? gst_util_uint64_scale_int(GstClockTime(1_000_000_000), fpsD, fpsN) : 0
                    latencyLock.withLock { latency.frameDuration = duration }
                    gst_aggregator_set_src_caps(aggregator, caps)
                    updateLatency()
                } else {
                    guard let layout else {
                        post(error: "mask pad: caps \(capsString(caps)) not accepted, expected "
                                    + "video/x-raw,format=GRAY8", code: Int32(GST_STREAM_ERROR_FORMAT.rawValue))
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

    func updateSrcCaps(_ downstream: UnsafeMutablePointer<GstCaps>?,
                       _ ret: UnsafeMutablePointer<UnsafeMutablePointer<GstCaps>?>) -> GstFlowReturn {
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

    /// Latency: a whole window must arrive before its first frame leaves, plus the longest edit seen (edits only: the
    /// model loads before the stream starts).
    private func updateLatency() {
        let window = GstClockTime(currentSettings.windowSize)
        let changed: GstClockTime? = latencyLock.withLock {
            let value = window * latency.frameDuration + latency.processingEstimate
            guard value != latency.reported else { return nil }
            latency.reported = value
            return value
        }
        if let changed { gst_aggregator_set_latency(aggregator, changed, changed) }
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
        if let pending = state.pendingFlow {
            state.pendingFlow = nil
            return pending
        }
        let pushed = pushFinished()
        if pushed != GST_FLOW_OK { return pushed }
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

    /// Hands the filled window to the worker, after pushing the previous one (one window in flight at most: the
    /// inputs wait for one window's edit at most).
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
        let settings = currentSettings
        if let rejection = settings.rejection {
            post(EditorFailure(.settings, rejection))
            return GST_FLOW_ERROR
        }
        let full = Mask.full(width: layout.width, height: layout.height)
        let job = WindowJob(number: state.windows, buffers: state.window.map(\.buffer),
                            masks: state.window.map { $0.mask ?? full }, layout: layout, settings: settings.editor)
        state.windows += 1
        state.window = []
        state.inFlight = job
        log(GST_LEVEL_DEBUG,
            "window \(job.number) dispatched: \(job.buffers.count) frames from pts \(job.buffers[0].pts)")
        // The element stays alive until the source thread has been woken for this window.
        gst_object_ref(UnsafeMutableRawPointer(element))
        worker.async { [self] in
            run(job)
            waker.async { [self] in
                wakeAggregator()
                gst_object_unref(UnsafeMutableRawPointer(element))
            }
        }
        return GST_FLOW_OK
    }

    /// Source thread: pushes the window in flight if its edit has ended.
    private func pushFinished() -> GstFlowReturn {
        guard let job = state.inFlight, job.done.wait(timeout: .now()) == .success else { return GST_FLOW_OK }
        state.inFlight = nil
        return push(job)
    }

    /// `waker` queue, after each edit: `aggregate` runs only when every sink pad holds data, so with no input coming
    /// (upstream waiting on this element's output, e.g. a tee whose other branch is full) a finished window would
    /// wait forever. A custom serialized event wakes the source thread, which pushes the window from `sinkEvent`. It
    /// goes to each pad with no queued buffer (events queue behind buffers; a buffer may land on one pad just before
    /// the event, and a second wake-up is a no-op); when both pads hold one, `aggregate` is about to run and pushes
    /// the window itself. A flushing or EOS pad refuses the event.
    /// Sending waits for the pad's stream lock while upstream's chain call waits for room on that pad (until
    /// `aggregate` takes the buffer there), so it runs on `waker`: the worker meanwhile edits the next window, which
    /// that `aggregate` may be waiting for.
    private func wakeAggregator() {
        for p in [videoPad, maskPad] where gst_aggregator_pad_has_buffer(p) == 0 {
            let event = gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
                                             gst_structure_new_empty(OCDEdit.wakeEventName))
            _ = gst_pad_send_event(pad(p), event)
        }
    }

    /// Worker thread: hold the window's model (a `model` change while playing loads here, untimed), then convert,
    /// edit and convert back.
    private func run(_ job: WindowJob) {
        defer { job.done.signal() }
        do throws(EditorFailure) {
            if cancel.isSet { throw EditorFailure(.cancelled, "cancelled") }
            try holdModel(job.settings.modelPath)
            let start = DispatchTime.now()
            defer { job.seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9 }
            try edit(job)
        } catch {
            job.failure = error
        }
        let changed = job.outputs.compactMap { $0 }.count
        log(GST_LEVEL_DEBUG, "window \(job.number) finished in \(job.seconds) s: "
            + (job.failure.map { "\($0.kind): \($0.message)" } ?? "\(changed) frames changed"))
    }

    private func edit(_ job: WindowJob) throws(EditorFailure) {
        var frames: [Frame] = []
        for b in job.buffers {
            guard let f = job.layout.readFrame(b.buffer) else {
                throw EditorFailure(.edit, "could not map an input frame for reading")
            }
            frames.append(f)
        }
        let masks = zip(frames, job.masks).map { $1.scaled(width: $0.width, height: $0.height) }
        let cancel = self.cancel
        let outcome = try session.edit(frames: frames, masks: masks, settings: job.settings,
                                       isCancelled: { cancel.isSet })
        if let warning = outcome.warning { post(warning: warning) }
        guard let edited = outcome.frames else {
            job.outputs = job.buffers.map { _ in nil }
            return
        }
        guard edited.count == frames.count else {
            throw EditorFailure(.edit, "editor returned \(edited.count) frames for a window of \(frames.count)")
        }
        for (i, out) in edited.enumerated() {
            let input = frames[i]
            if out == input { job.outputs.append(nil); continue }
            guard out.format == input.format, out.width == input.width, out.height == input.height,
                  let b = job.layout.writeFrame(out, like: job.buffers[i].buffer) else {
                throw EditorFailure(.edit, "editor returned a frame of another format or size")
            }
            job.outputs.append(b)
        }
    }

    /// The `progress` element message of a window just pushed (Progress.swift).
    private func postProgress(_ job: WindowJob) {
        let total = WindowProgress.totalFrames(upstreamOf: pad(videoPad), fpsN: job.layout.info.fps_n,
                                               fpsD: job.layout.info.fps_d)
        let report = progress.windowPushed(number: job.number, count: job.buffers.count, seconds: job.seconds,
                                           steps: job.settings.steps, total: total)
        _ = gst_element_post_message(element, WindowProgress.message(report, from: element))
    }

    /// Source thread: push a finished window downstream (or report its error).
    private func push(_ job: WindowJob) -> GstFlowReturn {
        if let failure = job.failure {
            if failure.kind == .cancelled { return GST_FLOW_FLUSHING }
            post(failure.kind == .edit ? EditorFailure(.edit, "editing a window failed: \(failure.message)") : failure)
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
        log(GST_LEVEL_DEBUG, "window \(job.number) pushed")
        postProgress(job)
        let estimate = GstClockTime(job.seconds * 1e9)
        let longer = latencyLock.withLock {
            guard estimate > latency.processingEstimate else { return false }
            latency.processingEstimate = estimate
            return true
        }
        if longer { updateLatency() }
        return GST_FLOW_OK
    }
}
